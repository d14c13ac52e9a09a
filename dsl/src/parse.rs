//! pest grammar → AST.
//!
//! pest stops at the first syntax error. To report every broken line of a
//! file in one pass, the parser blanks the offending line (keeping byte
//! offsets) and parses again, as long as that line is bracket-balanced so the
//! blanking cannot invent errors further down.

use crate::ast::*;
use crate::diag::Diagnostic;
use crate::source::{FileId, Span};
use pest::error::{ErrorVariant, InputLocation};
use pest::iterators::Pair;
use pest::Parser;

#[derive(pest_derive::Parser)]
#[grammar = "mer.pest"]
struct MerParser;

/// Upper bound on syntax errors collected from one file.
const MAX_SYNTAX_ERRORS: usize = 20;

/// Deepest bracket nesting accepted. Parsing, resolution and checking are
/// recursive; bounding the depth up front keeps hostile input from
/// overflowing the stack. Real recipes nest a handful of levels.
pub const MAX_DEPTH: usize = 64;

/// Visits each bracket outside strings and comments with its byte offset.
fn scan_brackets(text: &str, mut f: impl FnMut(usize, char) -> bool) {
    let mut in_str = false;
    let mut line_comment = false;
    let mut block_comment = false;
    let mut escaped = false;
    let bytes = text.as_bytes();
    for (i, c) in text.char_indices() {
        let next = bytes.get(i + 1).copied().unwrap_or(0) as char;
        if line_comment {
            line_comment = c != '\n';
        } else if block_comment {
            if c == '/' && i > 0 && bytes[i - 1] == b'*' {
                block_comment = false;
            }
        } else if in_str {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' || c == '\n' {
                in_str = false;
            }
        } else {
            match c {
                '"' => in_str = true,
                '/' if next == '/' => line_comment = true,
                '/' if next == '*' => block_comment = true,
                '{' | '[' | '(' | '}' | ']' | ')' if !f(i, c) => return,
                _ => {}
            }
        }
    }
}

fn too_deep(file: FileId, text: &str) -> Option<Diagnostic> {
    let mut depth = 0usize;
    let mut at = None;
    scan_brackets(text, |i, c| {
        if matches!(c, '{' | '[' | '(') {
            depth += 1;
            if depth > MAX_DEPTH {
                at = Some(i);
                return false;
            }
        } else {
            depth = depth.saturating_sub(1);
        }
        true
    });
    at.map(|i| {
        Diagnostic::error(
            "mer::too-deep",
            format!("brackets nest more than {MAX_DEPTH} levels deep"),
        )
        .at(
            Span::new(file, i, i + 1),
            format!("level {}", MAX_DEPTH + 1),
        )
        .help("flatten the value: no recipe needs this much nesting")
    })
}

/// Parses a whole recipe file. On syntax errors returns all it could find.
pub fn parse_file(file: FileId, text: &str) -> Result<File, Vec<Diagnostic>> {
    if let Some(d) = too_deep(file, text) {
        return Err(vec![d]);
    }
    // Track literal tokens (`=`, `}`) in errors, not only rule names.
    pest::set_error_detail(true);
    let mut work = text.to_string();
    let mut errors: Vec<Diagnostic> = Vec::new();
    let mut last_line_start: Option<usize> = None;
    loop {
        match MerParser::parse(Rule::file, &work) {
            Ok(mut pairs) => {
                if errors.is_empty() {
                    let file_pair = pairs.next().expect("grammar: file rule yields one pair");
                    return Ok(build_file(file, file_pair));
                }
                return Err(errors);
            }
            Err(e) => {
                let pos = match e.location {
                    InputLocation::Pos(p) => p,
                    InputLocation::Span((s, _)) => s,
                };
                let line_start = work[..pos].rfind('\n').map(|i| i + 1).unwrap_or(0);
                if last_line_start.is_some_and(|l| line_start <= l) {
                    return Err(errors);
                }
                errors.push(syntax_diag(file, text, &e, pos));
                let line_end = work[pos..]
                    .find('\n')
                    .map(|i| pos + i)
                    .unwrap_or(work.len());
                if errors.len() >= MAX_SYNTAX_ERRORS || !balanced(&work[line_start..line_end]) {
                    return Err(errors);
                }
                let blank: String = work[line_start..line_end]
                    .chars()
                    .map(|c| if c == '\n' { c } else { ' ' })
                    .collect();
                // Same byte length only if the line is ASCII; otherwise stop
                // rather than shift later spans.
                if blank.len() != line_end - line_start {
                    return Err(errors);
                }
                work.replace_range(line_start..line_end, &blank);
                last_line_start = Some(line_start);
            }
        }
    }
}

fn balanced(line: &str) -> bool {
    let mut depth = 0i32;
    let mut in_str = false;
    let mut prev = ' ';
    for c in line.chars() {
        if in_str {
            if c == '"' && prev != '\\' {
                in_str = false;
            }
        } else {
            match c {
                '"' => in_str = true,
                '{' | '[' | '(' => depth += 1,
                '}' | ']' | ')' => depth -= 1,
                _ => {}
            }
        }
        prev = c;
    }
    depth == 0 && !in_str
}

fn rule_name(r: &Rule) -> &'static str {
    match r {
        Rule::ident | Rule::kind | Rule::path | Rule::reference => "a name",
        Rule::expr | Rule::term | Rule::weight => "a value",
        Rule::string | Rule::inner => "a string",
        Rule::number => "a number",
        Rule::version => "a version such as `0.1`",
        Rule::header | Rule::kw_mer => "the header `mer 0.1`",
        Rule::block | Rule::map | Rule::params => "`{`",
        Rule::args => "`(`",
        Rule::list => "`[`",
        Rule::EOI => "end of file",
        Rule::use_item | Rule::kw_use => "`use`",
        Rule::experiment | Rule::kw_experiment => "`experiment`",
        Rule::fragment | Rule::kw_fragment => "`fragment`",
        Rule::extends | Rule::kw_extends => "`extends`",
        Rule::base => "a base recipe",
        Rule::assign | Rule::section | Rule::data_stmt | Rule::delete | Rule::sweep_assign => {
            "a statement"
        }
        Rule::sweep_path => "`sweep`",
        Rule::ablation | Rule::kw_ablation => "`ablation`",
        Rule::sweep | Rule::kw_sweep => "`sweep`",
        Rule::arg => "an input",
        Rule::call => "a component",
        Rule::env_call => "`env(...)`",
        Rule::boolean => "`true` or `false`",
        Rule::none => "`none`",
        _ => "a token",
    }
}

/// Punctuation tokens worth naming in "expected ..." (pest reports them
/// only through `Display`; its token type is not exported).
fn token_name(t: String) -> Option<String> {
    (!t.is_empty() && t.chars().all(|c| "={}()[],:*+~".contains(c))).then(|| format!("`{t}`"))
}

/// The last `{` `[` `(` that is never closed, for end-of-file errors.
fn unclosed_bracket(text: &str) -> Option<(usize, char)> {
    let mut stack = Vec::new();
    scan_brackets(text, |i, c| {
        if matches!(c, '{' | '[' | '(') {
            stack.push((i, c));
        } else {
            stack.pop();
        }
        true
    });
    stack.pop()
}

fn syntax_diag(file: FileId, text: &str, e: &pest::error::Error<Rule>, pos: usize) -> Diagnostic {
    let mut expected: Vec<String> = match &e.variant {
        ErrorVariant::ParsingError { positives, .. } => {
            positives.iter().map(|r| rule_name(r).to_string()).collect()
        }
        ErrorVariant::CustomError { .. } => Vec::new(),
    };
    if let Some(attempts) = e.parse_attempts() {
        if attempts.max_position == pos {
            expected.extend(
                attempts
                    .expected_tokens()
                    .iter()
                    .filter_map(|t| token_name(t.to_string())),
            );
        }
    }
    expected.retain(|x| x != "a token");
    expected.sort();
    expected.dedup();
    // The offending token: at least its first character (whatever its
    // width), then up to the next whitespace.
    let first_len = text[pos..].chars().next().map_or(0, char::len_utf8);
    let found_end = text[pos + first_len..]
        .char_indices()
        .find(|(_, c)| c.is_whitespace())
        .map(|(i, _)| pos + first_len + i)
        .unwrap_or(text.len());
    let found = &text[pos..found_end.min(text.len())];
    if found.is_empty() {
        if let Some((open, c)) = unclosed_bracket(text) {
            let close = match c {
                '{' => '}',
                '[' => ']',
                _ => ')',
            };
            return Diagnostic::error(
                "mer::syntax",
                format!("end of file inside `{c}`: it is never closed"),
            )
            .at(
                Span::new(file, open, open + 1),
                format!("opened here; add a matching `{close}`"),
            );
        }
    }
    let found_desc = if found.is_empty() {
        "end of file".to_string()
    } else {
        let shown: String = found.chars().take(20).collect();
        format!("`{shown}`")
    };
    let wanted = match expected.len() {
        0 => "a complete statement".to_string(),
        1 => expected[0].clone(),
        _ => {
            let (last, rest) = expected.split_last().expect("len>1");
            format!("{} or {}", rest.join(", "), last)
        }
    };
    let end = if found.is_empty() {
        pos
    } else {
        found_end.min(text.len())
    };
    let mut d = Diagnostic::error(
        "mer::syntax",
        format!("expected {wanted}, found {found_desc}"),
    )
    .at(
        Span::new(file, pos, end.max(pos)),
        format!("expected {wanted} here"),
    );
    if found.starts_with(':') && !found.starts_with("::") {
        d = d.help("recipes use `key = value`, not `key: value`");
    } else if found.starts_with('\'') {
        d = d.help("strings use double quotes: \"...\"");
    } else if found.starts_with('=') && text[..pos].trim_end().ends_with('=') {
        d = d.help("assignment is a single `=`");
    } else if found.starts_with('"')
        && !found[1..].contains('"')
        && !text[pos + 1..]
            .split('\n')
            .next()
            .unwrap_or("")
            .contains('"')
    {
        d = d.help("this string is not closed on its line");
    }
    d
}

/// Parses a `--set` override (`key=value` or `~key`) with the recipe grammar.
pub fn parse_override(file: FileId, text: &str) -> Result<Stmt, Diagnostic> {
    if let Some(d) = too_deep(file, text) {
        return Err(d);
    }
    match MerParser::parse(Rule::override_stmt, text) {
        Ok(mut pairs) => {
            let p = pairs.next().expect("grammar: override yields one pair");
            let inner = p
                .into_inner()
                .next()
                .expect("grammar: override has a statement");
            Ok(build_stmt(file, inner))
        }
        Err(e) => {
            let pos = match e.location {
                InputLocation::Pos(p) => p,
                InputLocation::Span((s, _)) => s,
            };
            Err(syntax_diag(file, text, &e, pos).help(override_help(text, pos)))
        }
    }
}

/// Help for an override that does not parse. The usual cause is a string
/// or path whose quotes the shell removed (`--set data.root="/x/y"` arrives
/// as `data.root=/x/y`), so that case gets the quoting spelled out.
fn override_help(text: &str, pos: usize) -> String {
    let generic = "an override is `key.path=value` or `~key.path` (delete)";
    let Some((key, value)) = text.split_once('=') else {
        return generic.into();
    };
    let key = key.trim();
    let value = value.trim();
    let key_ok = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    let bare = !value.is_empty() && !value.starts_with(['"', '[', '{', '(']);
    if key_ok && bare && pos > key.len() {
        let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
        format!(
            "strings and paths need double quotes, which the shell removes unless the whole override is in single quotes: --set '{key}=\"{escaped}\"'"
        )
    } else {
        generic.into()
    }
}

fn span(file: FileId, p: &Pair<Rule>) -> Span {
    let s = p.as_span();
    Span::new(file, s.start(), s.end())
}

fn build_file(file: FileId, pair: Pair<Rule>) -> File {
    let mut version = String::new();
    let mut version_span = Span::new(file, 0, 0);
    let mut uses = Vec::new();
    let mut blocks = Vec::new();
    for p in pair.into_inner() {
        match p.as_rule() {
            Rule::header => {
                if let Some(v) = p.into_inner().find(|x| x.as_rule() == Rule::version) {
                    version = v.as_str().to_string();
                    version_span = span(file, &v);
                }
            }
            Rule::use_item => {
                if let Some(id) = p.into_inner().find(|x| x.as_rule() == Rule::ident) {
                    uses.push(ident(file, id));
                }
            }
            Rule::experiment | Rule::fragment => blocks.push(build_block(file, p)),
            _ => {}
        }
    }
    File {
        version,
        version_span,
        uses,
        blocks,
    }
}

fn ident(file: FileId, p: Pair<Rule>) -> Ident {
    Ident {
        name: p.as_str().to_string(),
        span: span(file, &p),
    }
}

fn build_block(file: FileId, p: Pair<Rule>) -> Block {
    let kind = if p.as_rule() == Rule::experiment {
        BlockKind::Experiment
    } else {
        BlockKind::Fragment
    };
    let sp = span(file, &p);
    let mut name = None;
    let mut bases = Vec::new();
    let mut body = Vec::new();
    for q in p.into_inner() {
        match q.as_rule() {
            Rule::ident => name = Some(ident(file, q)),
            Rule::extends => {
                for b in q.into_inner().filter(|b| b.as_rule() == Rule::base) {
                    bases.push(build_base(file, b));
                }
            }
            Rule::block => body = build_stmts(file, q),
            _ => {}
        }
    }
    Block {
        kind,
        name: name.expect("grammar: block has a name"),
        bases,
        body,
        span: sp,
    }
}

fn build_base(file: FileId, b: Pair<Rule>) -> Base {
    let mut inner = b.into_inner();
    let first = inner.next().expect("grammar: base has content");
    match first.as_rule() {
        Rule::string => {
            let path_span = span(file, &first);
            let path = unescape(first);
            let name = inner.next().map(|n| ident(file, n));
            Base::File {
                path,
                path_span,
                name,
            }
        }
        _ => Base::Local(ident(file, first)),
    }
}

fn build_stmts(file: FileId, p: Pair<Rule>) -> Vec<Stmt> {
    p.into_inner().map(|s| build_stmt(file, s)).collect()
}

fn build_path(file: FileId, p: Pair<Rule>) -> Path {
    let sp = span(file, &p);
    Path {
        segments: p.into_inner().map(|i| ident(file, i)).collect(),
        span: sp,
    }
}

fn build_stmt(file: FileId, s: Pair<Rule>) -> Stmt {
    let sp = span(file, &s);
    match s.as_rule() {
        Rule::assign => {
            let mut it = s.into_inner();
            let path = build_path(file, it.next().expect("assign path"));
            let value = build_expr(file, it.next().expect("assign value"));
            Stmt::Assign { path, value }
        }
        Rule::section => {
            let mut it = s.into_inner();
            let path = build_path(file, it.next().expect("section path"));
            let body = build_stmts(file, it.next().expect("section block"));
            Stmt::Section {
                path,
                body,
                span: sp,
            }
        }
        Rule::delete => {
            let target = s.into_inner().next().expect("delete path");
            if target.as_rule() == Rule::sweep_path {
                Stmt::DeleteSweep {
                    axis: sweep_axis(file, target),
                    span: sp,
                }
            } else {
                Stmt::Delete {
                    path: build_path(file, target),
                }
            }
        }
        Rule::sweep_assign => {
            let mut it = s.into_inner();
            let target = it.next().expect("sweep_assign path");
            let target_span = span(file, &target);
            let value = build_expr(file, it.next().expect("sweep_assign value"));
            match sweep_axis(file, target) {
                Some(path) => Stmt::Sweep {
                    entries: vec![(path, value)],
                    span: sp,
                },
                // `sweep=[...]` names no axis: an empty sweep statement is
                // reported by the resolver like `sweep {}`.
                None => Stmt::Sweep {
                    entries: Vec::new(),
                    span: target_span,
                },
            }
        }
        Rule::data_stmt => {
            let mut it = s.into_inner().filter(|x| x.as_rule() != Rule::kw_data);
            let name = ident(file, it.next().expect("data name"));
            let value = build_expr(file, it.next().expect("data value"));
            Stmt::Data { name, value }
        }
        Rule::ablation => {
            let mut it = s.into_inner().filter(|x| x.as_rule() != Rule::kw_ablation);
            let n = it.next().expect("ablation name");
            let name = if n.as_rule() == Rule::string {
                let nsp = span(file, &n);
                Ident {
                    name: unescape(n),
                    span: nsp,
                }
            } else {
                ident(file, n)
            };
            let body = build_stmts(file, it.next().expect("ablation block"));
            Stmt::Ablation {
                name,
                body,
                span: sp,
            }
        }
        Rule::sweep => {
            let mut entries = Vec::new();
            for a in s.into_inner().filter(|x| x.as_rule() == Rule::assign) {
                let mut it = a.into_inner();
                let path = build_path(file, it.next().expect("sweep path"));
                let value = build_expr(file, it.next().expect("sweep value"));
                entries.push((path, value));
            }
            Stmt::Sweep { entries, span: sp }
        }
        r => unreachable!("grammar: unexpected statement rule {r:?}"),
    }
}

/// The axis of a `sweep_path` (`sweep.optimizer.lr` → `optimizer.lr`);
/// `None` for the bare `sweep`.
fn sweep_axis(file: FileId, p: Pair<Rule>) -> Option<Path> {
    let segments: Vec<Ident> = p
        .into_inner()
        .filter(|i| i.as_rule() == Rule::ident)
        .map(|i| ident(file, i))
        .collect();
    let first = segments.first()?.span;
    let last = segments.last()?.span;
    Some(Path {
        span: Span::new(file, first.start, last.end),
        segments,
    })
}

fn unescape(p: Pair<Rule>) -> String {
    let raw = p.into_inner().next().map(|i| i.as_str()).unwrap_or("");
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(o) => out.push(o),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn build_expr(file: FileId, p: Pair<Rule>) -> Expr {
    let sp = span(file, &p);
    match p.as_rule() {
        Rule::expr => {
            let terms: Vec<Pair<Rule>> = p.into_inner().collect();
            if terms.len() == 1 {
                let t = terms.into_iter().next().expect("one term");
                let mut inner: Vec<Pair<Rule>> = t.clone().into_inner().collect();
                if inner.len() == 1 {
                    return build_expr(file, inner.remove(0));
                }
                return Expr {
                    kind: ExprKind::Sum(vec![build_term(file, t)]),
                    span: sp,
                };
            }
            Expr {
                kind: ExprKind::Sum(terms.into_iter().map(|t| build_term(file, t)).collect()),
                span: sp,
            }
        }
        Rule::number => {
            let s = p.as_str();
            let kind = if s.contains(['.', 'e', 'E']) {
                match s.parse::<f64>() {
                    Ok(f) => ExprKind::Float(f),
                    Err(_) => ExprKind::Str(s.to_string()),
                }
            } else {
                match s.parse::<i64>() {
                    Ok(i) => ExprKind::Int(i),
                    // Out of i64 range: keep the magnitude as a float rather
                    // than fail; the schema check reports the type.
                    Err(_) => ExprKind::Float(s.parse::<f64>().unwrap_or(f64::INFINITY)),
                }
            };
            Expr { kind, span: sp }
        }
        Rule::string => Expr {
            kind: ExprKind::Str(unescape(p)),
            span: sp,
        },
        Rule::boolean => Expr {
            kind: ExprKind::Bool(p.as_str() == "true"),
            span: sp,
        },
        Rule::none => Expr {
            kind: ExprKind::None,
            span: sp,
        },
        Rule::list => Expr {
            kind: ExprKind::List(p.into_inner().map(|e| build_expr(file, e)).collect()),
            span: sp,
        },
        Rule::map => Expr {
            kind: ExprKind::Map(build_stmts(file, p)),
            span: sp,
        },
        Rule::reference => Expr {
            kind: ExprKind::Ref(build_path(file, p)),
            span: sp,
        },
        Rule::env_call => {
            let mut it = p.into_inner();
            let var = unescape(it.next().expect("env var"));
            let default = it.next().map(|d| Box::new(build_expr(file, d)));
            Expr {
                kind: ExprKind::Env { var, default },
                span: sp,
            }
        }
        Rule::call => {
            let mut kind = None;
            let mut args = None;
            let mut params = None;
            for q in p.into_inner() {
                match q.as_rule() {
                    Rule::kind => kind = Some(build_path(file, q)),
                    Rule::args => {
                        args = Some(
                            q.into_inner()
                                .map(|a| {
                                    let mut it = a.into_inner().peekable();
                                    let name =
                                        if it.peek().map(|x| x.as_rule()) == Some(Rule::ident) {
                                            it.next().map(|n| ident(file, n))
                                        } else {
                                            None
                                        };
                                    let value = build_expr(file, it.next().expect("arg value"));
                                    Arg { name, value }
                                })
                                .collect(),
                        )
                    }
                    Rule::params => params = Some(build_stmts(file, q)),
                    _ => {}
                }
            }
            Expr {
                kind: ExprKind::Call {
                    kind: kind.expect("grammar: call has a kind"),
                    args,
                    params,
                },
                span: sp,
            }
        }
        r => unreachable!("grammar: unexpected expression rule {r:?}"),
    }
}

fn build_term(file: FileId, t: Pair<Rule>) -> Term {
    let mut weight = None;
    let mut expr = None;
    for q in t.into_inner() {
        if q.as_rule() == Rule::weight {
            let w = q.into_inner().next().expect("weight number");
            let wsp = span(file, &w);
            weight = Some((w.as_str().parse::<f64>().unwrap_or(f64::NAN), wsp));
        } else {
            expr = Some(build_expr(file, q));
        }
    }
    Term {
        weight,
        expr: expr.expect("grammar: term has an atom"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(src: &str) -> File {
        match parse_file(FileId(0), src) {
            Ok(f) => f,
            Err(e) => panic!("parse failed: {e:?}"),
        }
    }

    #[test]
    fn parses_header_uses_and_blocks() {
        let f = ok("mer 0.1\nuse au_llm\nexperiment a { seed = 1 }\nfragment b extends a, \"x.mer\"::c { }");
        assert_eq!(f.version, "0.1");
        assert_eq!(f.uses[0].name, "au_llm");
        assert_eq!(f.blocks.len(), 2);
        assert_eq!(f.blocks[1].bases.len(), 2);
    }

    #[test]
    fn numbers_keep_int_and_float_apart() {
        let f = ok("mer 0.1 experiment a { x = 3e-5, y = 3, z = -2.5 }");
        let kinds: Vec<_> = f.blocks[0]
            .body
            .iter()
            .map(|s| match s {
                Stmt::Assign { value, .. } => format!("{:?}", value.kind),
                _ => String::new(),
            })
            .collect();
        assert_eq!(kinds, ["Float(3e-5)", "Int(3)", "Float(-2.5)"]);
    }

    #[test]
    fn calls_refs_and_weighted_sums() {
        let f = ok("mer 0.1 experiment a {\n model { t = au.efp(cnn.mid, x = cnn.high) { dropout = 0.3 } }\n loss = 0.5 * loss.mse(a, b) + loss.ce(c, d) {}\n}");
        match &f.blocks[0].body[1] {
            Stmt::Assign { value, .. } => match &value.kind {
                ExprKind::Sum(t) => {
                    assert_eq!(t.len(), 2);
                    assert_eq!(t[0].weight.map(|w| w.0), Some(0.5));
                }
                k => panic!("{k:?}"),
            },
            s => panic!("{s:?}"),
        }
    }

    #[test]
    fn keyword_boundaries() {
        let f = ok("mer 0.1 experiment a { dataset = 1, data d = x.y {} }");
        assert!(matches!(f.blocks[0].body[0], Stmt::Assign { .. }));
        assert!(matches!(f.blocks[0].body[1], Stmt::Data { .. }));
    }

    #[test]
    fn collects_several_syntax_errors() {
        let src = "mer 0.1\nexperiment a {\n  x = = 1\n  y = 2\n  z: 3\n}\n";
        let e = parse_file(FileId(0), src).unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
    }

    #[test]
    fn override_grammar() {
        assert!(matches!(
            parse_override(FileId(0), "train.epochs=5").unwrap(),
            Stmt::Assign { .. }
        ));
        assert!(matches!(
            parse_override(FileId(0), "~optimizer.groups").unwrap(),
            Stmt::Delete { .. }
        ));
        assert!(parse_override(FileId(0), "train.epochs=").is_err());
    }
}

#[cfg(test)]
mod regressions {
    use super::*;

    /// Found by fuzz_recipes: a multi-byte character at the error position
    /// was sliced at byte 1.
    #[test]
    fn multibyte_char_at_error_position() {
        let e = parse_file(FileId(0), "mer 0.1\u{a0}x").unwrap_err();
        assert_eq!(e[0].code, "mer::syntax");
        let e = parse_file(FileId(0), "mer 0.1\nexperiment e { x = é }").unwrap_err();
        assert!(e[0].message.contains("`é"), "{}", e[0].message);
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = format!(
            "mer 0.1\nexperiment e {{ x = {}{} }}",
            "[".repeat(5000),
            "]".repeat(5000)
        );
        let e = parse_file(FileId(0), &deep).unwrap_err();
        assert_eq!(e[0].code, "mer::too-deep");
        // Brackets in strings and comments do not count.
        let ok = format!(
            "mer 0.1\n// {}\nexperiment e {{ x = \"{}\" }}",
            "{".repeat(100),
            "[".repeat(100)
        );
        assert!(parse_file(FileId(0), &ok).is_ok());
    }
}
