//! Diagnostics: one typed error value (`Problem`) with a stable code, a message, an optional
//! labelled span in a user's file, help text and related problems.
//!
//! Every stage returns `Problem`s (or collects many of them); only the command layer turns them
//! into `miette` reports. Spans are byte ranges in the file named by `SourceFile`, so a report
//! always points at the line the user wrote. This module does not print anything itself.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, Severity, SourceCode};

/// The codes a user can look up in `docs/diagnostics.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    ProjectNotFound,
    Yaml,
    ProjectConfig,
    UnknownKey,
    Profile,
    Io,
    Jinja,
    UnknownRef,
    UnknownSource,
    Cycle,
    DuplicateNode,
    UnsupportedMaterialization,
    Database,
    DatabaseLocked,
    Selection,
    Interrupted,
    IncrementalConfig,
    SchemaChange,
    DuplicateKey,
    SnapshotConfig,
    BatchFailed,
    UnknownTest,
    TestFailed,
    UnitTest,
    Packages,
    Contract,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::ProjectNotFound => "xform::project_not_found",
            Code::Yaml => "xform::yaml",
            Code::ProjectConfig => "xform::project_config",
            Code::UnknownKey => "xform::unknown_key",
            Code::Profile => "xform::profile",
            Code::Io => "xform::io",
            Code::Jinja => "xform::jinja",
            Code::UnknownRef => "xform::unknown_ref",
            Code::UnknownSource => "xform::unknown_source",
            Code::Cycle => "xform::cycle",
            Code::DuplicateNode => "xform::duplicate_node",
            Code::UnsupportedMaterialization => "xform::unsupported_materialization",
            Code::Database => "xform::database",
            Code::DatabaseLocked => "xform::database_locked",
            Code::Selection => "xform::selection",
            Code::Interrupted => "xform::interrupted",
            Code::IncrementalConfig => "xform::incremental_config",
            Code::SchemaChange => "xform::schema_change",
            Code::DuplicateKey => "xform::duplicate_key",
            Code::SnapshotConfig => "xform::snapshot_config",
            Code::BatchFailed => "xform::batch_failed",
            Code::UnknownTest => "xform::unknown_test",
            Code::TestFailed => "xform::test_failed",
            Code::UnitTest => "xform::unit_test",
            Code::Packages => "xform::packages",
            Code::Contract => "xform::contract",
        }
    }
}

/// A file's text with the name shown in diagnostics (a path relative to the project).
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub name: String,
    pub text: Arc<str>,
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: impl Into<Arc<str>>) -> Self {
        SourceFile {
            name: name.into(),
            text: text.into(),
        }
    }

    /// Byte offset of the start of a 1-based line and column.
    pub fn offset_of(&self, line: usize, column: usize) -> usize {
        let mut offset = 0;
        for (i, l) in self.text.split_inclusive('\n').enumerate() {
            if i + 1 == line {
                return (offset + column.saturating_sub(1)).min(self.text.len());
            }
            offset += l.len();
        }
        self.text.len()
    }

    /// The span of a whole 1-based line, without its line break.
    pub fn line_span(&self, line: usize) -> (usize, usize) {
        let start = self.offset_of(line, 1);
        let len = self.text[start..]
            .find('\n')
            .unwrap_or(self.text.len() - start);
        (start, len)
    }
}

/// 1-based line number of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

/// A labelled place in a file.
#[derive(Debug, Clone)]
pub struct Label {
    pub file: SourceFile,
    pub offset: usize,
    pub len: usize,
    pub text: String,
}

/// One diagnostic.
#[derive(Debug, Clone)]
pub struct Problem {
    pub code: Code,
    pub message: String,
    pub label: Option<Label>,
    pub help: Option<String>,
    pub warning: bool,
    pub related: Vec<Problem>,
    /// The help holds a table: its lines are printed as they are, never wrapped.
    pub preformatted: bool,
}

impl Problem {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Problem {
            code,
            message: message.into(),
            label: None,
            help: None,
            warning: false,
            related: Vec::new(),
            preformatted: false,
        }
    }

    /// Print the help's lines unwrapped (it holds a table).
    #[must_use]
    pub fn preformatted(mut self) -> Self {
        self.preformatted = true;
        self
    }

    #[must_use]
    pub fn at(
        mut self,
        file: &SourceFile,
        offset: usize,
        len: usize,
        text: impl Into<String>,
    ) -> Self {
        let offset = offset.min(file.text.len());
        let len = len.min(file.text.len() - offset);
        self.label = Some(Label {
            file: file.clone(),
            offset,
            len,
            text: text.into(),
        });
        self
    }

    /// Label a whole 1-based line of a file.
    #[must_use]
    pub fn at_line(self, file: &SourceFile, line: usize, text: impl Into<String>) -> Self {
        let (start, len) = file.line_span(line);
        self.at(file, start, len, text)
    }

    #[must_use]
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    #[must_use]
    pub fn warning(mut self) -> Self {
        self.warning = true;
        self
    }

    #[must_use]
    pub fn related(mut self, related: Vec<Problem>) -> Self {
        self.related = related;
        self
    }

    pub fn io(path: &Path, err: &std::io::Error) -> Self {
        Problem::new(
            Code::Io,
            format!("cannot read or write `{}`: {err}", path.display()),
        )
    }

    /// The file and 1-based line of the label, when there is one.
    pub fn location(&self) -> Option<(String, usize)> {
        self.label
            .as_ref()
            .map(|l| (l.file.name.clone(), line_of(&l.file.text, l.offset)))
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Problem {}

impl Diagnostic for Problem {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.code.as_str()))
    }

    fn severity(&self) -> Option<Severity> {
        Some(if self.warning {
            Severity::Warning
        } else {
            Severity::Error
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.label.as_ref().map(|l| &l.file as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        self.label.as_ref().map(|l| {
            Box::new(std::iter::once(LabeledSpan::new(
                Some(l.text.clone()),
                l.offset,
                l.len,
            ))) as Box<dyn Iterator<Item = LabeledSpan>>
        })
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        if self.related.is_empty() {
            None
        } else {
            Some(Box::new(self.related.iter().map(|p| p as &dyn Diagnostic)))
        }
    }
}

impl SourceCode for SourceFile {
    fn read_span<'a>(
        &'a self,
        span: &miette::SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn miette::SpanContents<'a> + 'a>, miette::MietteError> {
        let inner = self
            .text
            .read_span(span, context_lines_before, context_lines_after)?;
        Ok(Box::new(miette::MietteSpanContents::new_named(
            self.name.clone(),
            inner.data(),
            *inner.span(),
            inner.line(),
            inner.column(),
            inner.line_count(),
        )))
    }
}

/// Render problems as text without colour at a fixed width (used by tests and non-terminals).
pub fn render_plain(problem: &Problem, width: usize) -> String {
    let handler =
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
            .with_width(width)
            .with_wrap_lines(!problem.preformatted);
    let mut out = String::new();
    let _ = handler.render_report(&mut out, problem);
    out
}
