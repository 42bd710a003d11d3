//! Evaluation allocates nothing: counted with a global allocator that
//! tallies every allocation made on the evaluating thread.
#![allow(
    unsafe_code,
    reason = "a GlobalAlloc wrapper is unsafe by definition; it only counts and delegates"
)]
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "a test fails by panicking"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use warrant_policy::{KeyStatus, Policy, Request};
use warrant_schemas::{Attr, AttrValue};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: delegates every call unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn evaluate_does_not_allocate() {
    let mut text = String::from("[policy]\nversion = 1\n[sets]\neu = [\"DE\", \"FR\"]\n");
    for i in 0..300 {
        text.push_str(&format!(
            "[[rule]]\nid = \"r{i}\"\neffect = \"{}\"\nprincipal = [\"{}-{i}\", \"team-{}*\"]\naction = \"pay.*\"\n\
             region = \"set:eu\"\ntime = \"06:00-23:00\"\nwhen = {{ amount = {{ max = {} }}, currency = \"EUR\", urgent = false }}\n",
            if i % 10 == 0 { "deny" } else { "allow" },
            if i % 10 == 0 { "blocked" } else { "svc" },
            if i % 10 == 0 { 100 + i } else { i % 7 },
            1000 + i
        ));
    }
    let policy = Policy::from_sources(&[("p.toml", &text)]).unwrap();
    let attrs = [
        Attr {
            key: "amount",
            value: AttrValue::Int(1100),
        },
        Attr {
            key: "currency",
            value: AttrValue::Str("EUR"),
        },
        Attr {
            key: "urgent",
            value: AttrValue::Bool(false),
        },
    ];
    let principals = [
        "svc-5",
        "svc-151",
        "team-3x",
        "blocked-20",
        "team-120",
        "nobody",
    ];
    let mut allowed = 0;
    let before = allocations();
    for round in 0..10_000u32 {
        let req = Request {
            principal: principals[round as usize % principals.len()],
            action: "pay.transfer",
            resource: "",
            environment: "prod",
            region: if round % 3 == 0 { "US" } else { "DE" },
            attributes: &attrs,
            minute_of_day: (round % 1440) as u16,
            key_status: KeyStatus::Active,
        };
        allowed += u32::from(policy.evaluate(&req).is_allow());
    }
    let during = allocations() - before;
    assert_eq!(
        during, 0,
        "evaluate allocated {during} times in 10,000 calls"
    );
    assert!(
        allowed > 0 && allowed < 10_000,
        "the requests exercise both verdicts ({allowed} allowed)"
    );
}
