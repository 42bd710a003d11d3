//! Policy errors: what is wrong, and where.

/// A policy that cannot be loaded. The message names the file, the line and
/// the rule where it can.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The text is not a valid policy.
    #[error("{file}:{line}: {}{message}", rule.as_ref().map(|r| format!("rule `{r}`: ")).unwrap_or_default())]
    Invalid {
        /// File path as given.
        file: String,
        /// 1-based line.
        line: usize,
        /// Rule id, when the error is inside a rule.
        rule: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// A file or directory could not be read.
    #[error("cannot read `{path}`: {message}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        message: String,
    },
}

impl PolicyError {
    pub(crate) fn at(file: &str, line: usize, rule: Option<&str>, message: String) -> Self {
        PolicyError::Invalid {
            file: file.to_owned(),
            line,
            rule: rule.map(str::to_owned),
            message,
        }
    }
}
