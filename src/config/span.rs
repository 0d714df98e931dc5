//! Byte offsets to human positions, and the errors that carry them: a
//! definition's problems are collected with the field and the line they
//! are at.

use std::fmt;

use serde::{Deserialize, Serialize};

/// 1-based line and column of a byte offset in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, col)
}

/// One problem in an agent file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldError {
    pub file: String,
    /// 1-based; absent when the source has no lines (a JSON body).
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Dotted path of the offending key (`memory.scope`), or `(file)`.
    pub field: String,
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{}:{l}:{c}: {}: {}", self.file, self.field, self.reason),
            _ => write!(f, "{}: {}: {}", self.file, self.field, self.reason),
        }
    }
}

/// Collects a document's problems, placing each at its line when the
/// source has lines.
pub(super) struct Errors<'a> {
    pub(super) file: &'a str,
    pub(super) text: &'a str,
    pub(super) with_lines: bool,
    pub(super) list: Vec<FieldError>,
}

impl<'a> Errors<'a> {
    pub(super) fn at(&mut self, span: std::ops::Range<usize>, field: &str, reason: impl Into<String>) {
        let (line, column) = if self.with_lines {
            let (l, c) = line_col(self.text, span.start);
            (Some(l), Some(c))
        } else {
            (None, None)
        };
        self.list.push(FieldError { file: self.file.into(), line, column, field: field.into(), reason: reason.into() });
    }

    pub(super) fn whole(&mut self, field: &str, reason: impl Into<String>) {
        let line = self.with_lines.then_some(1);
        self.list.push(FieldError {
            file: self.file.into(),
            line,
            column: line,
            field: field.into(),
            reason: reason.into(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::line_col;

    #[test]
    fn positions() {
        let t = "a = 1\nbb = 2\n";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 6), (2, 1));
        assert_eq!(line_col(t, 8), (2, 3));
        assert_eq!(line_col(t, 999), (3, 1));
    }
}
