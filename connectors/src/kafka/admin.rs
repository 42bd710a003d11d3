//! Topic creation, for tests, examples and first runs.

use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

use super::KafkaError;

/// Creates `topics` with `partitions` partitions each (replication 1) on
/// `brokers`, blocking until the broker answers. Fails if any exists.
pub fn create_topics(brokers: &str, topics: &[&str], partitions: i32) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
        .collect();
    for result in block_on(admin.create_topics(&new, &AdminOptions::new()))? {
        result.map_err(|(topic, code)| KafkaError::Topic {
            topic,
            message: format!("cannot create: {code}"),
        })?;
    }
    Ok(())
}

/// Runs one future to completion on this thread: the admin client's
/// futures are driven by librdkafka's own thread and only need waking.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(Duration::from_millis(10));
    }
}
