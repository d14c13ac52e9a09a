//! Diagnostics: every recipe error carries a code, a primary span and, where
//! a close name exists, a "did you mean". Rendering goes through miette so
//! the terminal shows `file:line:col` with a caret snippet.

use crate::source::{SourceMap, Span};
use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
    /// Information about what mer did, not a problem.
    Note,
}

/// A span with the text shown under its caret.
#[derive(Debug, Clone)]
pub struct Label {
    pub span: Span,
    pub text: String,
}

/// One problem found in a recipe.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub code: &'static str,
    pub severity: Severity,
    pub message: String,
    pub primary: Option<Label>,
    pub secondary: Vec<Label>,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            severity: Severity::Error,
            message: message.into(),
            primary: None,
            secondary: Vec::new(),
            help: None,
        }
    }
    pub fn warning(code: &'static str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Self::error(code, message)
        }
    }
    /// Something mer did on the recipe's behalf that a reader should know
    /// (nodes an ablation left dangling, pruned); never a problem.
    pub fn note(code: &'static str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Note,
            ..Self::error(code, message)
        }
    }
    pub fn at(mut self, span: Span, text: impl Into<String>) -> Self {
        self.primary = Some(Label {
            span,
            text: text.into(),
        });
        self
    }
    pub fn also(mut self, span: Span, text: impl Into<String>) -> Self {
        self.secondary.push(Label {
            span,
            text: text.into(),
        });
        self
    }
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
    /// Adds "did you mean `x`?" when a candidate is close to `name`.
    pub fn suggest<'a>(self, name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Self {
        match did_you_mean(name, candidates) {
            Some(s) => self.help(format!("did you mean `{s}`?")),
            None => self,
        }
    }
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// The closest candidate by edit distance, if it is close enough to be a typo.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let lname = name.to_lowercase();
    let mut best: Option<(f64, &str)> = None;
    for c in candidates {
        if c == name {
            continue;
        }
        let lc = c.to_lowercase();
        let dist = strsim::damerau_levenshtein(&lname, &lc);
        let limit = (name.chars().count().max(c.chars().count()) / 3).max(1);
        let jw = strsim::jaro_winkler(&lname, &lc);
        // A short edit distance or a long shared prefix (e.g. `cnn3d` for
        // `cnn3d_se`) both read as the same name mistyped.
        let score = if dist <= limit {
            2.0 - dist as f64 / 10.0
        } else if jw >= 0.88 {
            jw
        } else {
            continue;
        };
        if best.is_none_or(|(s, b)| score > s || (score == s && c < b)) {
            best = Some((score, c));
        }
    }
    best.map(|(_, c)| c.to_string())
}

/// Adapter that gives one diagnostic its source text for miette.
#[derive(Debug)]
struct Rendered {
    code: &'static str,
    severity: Severity,
    message: String,
    help: Option<String>,
    src: Option<NamedSource<String>>,
    labels: Vec<LabeledSpan>,
    related: Vec<Rendered>,
}

impl fmt::Display for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
impl std::error::Error for Rendered {}

impl miette::Diagnostic for Rendered {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.code))
    }
    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
            Severity::Note => miette::Severity::Advice,
        })
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.src.as_ref().map(|s| s as &dyn miette::SourceCode)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.labels.is_empty() {
            None
        } else {
            Some(Box::new(self.labels.iter().cloned()))
        }
    }
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn miette::Diagnostic> + 'a>> {
        if self.related.is_empty() {
            None
        } else {
            Some(Box::new(
                self.related.iter().map(|r| r as &dyn miette::Diagnostic),
            ))
        }
    }
}

fn source_of(map: &SourceMap, span: Span) -> NamedSource<String> {
    let f = map.get(span.file);
    NamedSource::new(f.name.clone(), f.text.clone())
}

fn labeled(label: &Label, primary: bool) -> LabeledSpan {
    let len = label.span.end.saturating_sub(label.span.start);
    if primary {
        LabeledSpan::new_primary_with_span(Some(label.text.clone()), (label.span.start, len))
    } else {
        LabeledSpan::new_with_span(Some(label.text.clone()), (label.span.start, len))
    }
}

fn to_rendered(d: &Diagnostic, map: &SourceMap) -> Rendered {
    let mut labels = Vec::new();
    let mut related = Vec::new();
    let src = d.primary.as_ref().map(|p| source_of(map, p.span));
    if let Some(p) = &d.primary {
        labels.push(labeled(p, true));
    }
    for s in &d.secondary {
        // miette shows one source per diagnostic; a label in another file
        // (an `extends` base) becomes a related note pointing there.
        if d.primary
            .as_ref()
            .is_some_and(|p| p.span.file == s.span.file)
        {
            labels.push(labeled(s, false));
        } else {
            related.push(Rendered {
                code: d.code,
                severity: Severity::Warning,
                message: s.text.clone(),
                help: None,
                src: Some(source_of(map, s.span)),
                labels: vec![labeled(s, true)],
                related: Vec::new(),
            });
        }
    }
    Rendered {
        code: d.code,
        severity: d.severity,
        message: d.message.clone(),
        help: d.help.clone(),
        src,
        labels,
        related,
    }
}

/// Renders diagnostics for a terminal (`color`) or for snapshots (plain).
pub fn render(diags: &[Diagnostic], map: &SourceMap, color: bool) -> String {
    let theme = if color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_width(100)
        .with_links(false);
    let mut out = String::new();
    for d in diags {
        let r = to_rendered(d, map);
        if handler.render_report(&mut out, &r).is_err() {
            out.push_str(&format!("{}: {}\n", d.code, d.message));
        }
        out.push('\n');
    }
    out
}

/// One line per diagnostic: `file:line:col: error[code]: message`.
pub fn render_short(diags: &[Diagnostic], map: &SourceMap) -> String {
    let mut out = String::new();
    for d in diags {
        let loc = d
            .primary
            .as_ref()
            .map(|p| map.location(p.span))
            .unwrap_or_else(|| "<recipe>".into());
        let sev = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "note",
        };
        out.push_str(&format!("{loc}: {sev}[{}]: {}\n", d.code, d.message));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let c = ["epochs", "batch", "select"];
        assert_eq!(did_you_mean("epoch", c).as_deref(), Some("epochs"));
        assert_eq!(did_you_mean("bacth", c).as_deref(), Some("batch"));
        assert_eq!(did_you_mean("learning_rate", c), None);
    }
}
