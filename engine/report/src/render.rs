//! Markdown and LaTeX from the same blocks.

use super::{Block, Table};
use std::fmt::Write;

/// Markdown: GitHub tables, each preceded by its caption.
pub fn markdown_of(blocks: &[Block]) -> String {
    let mut o = String::new();
    for b in blocks {
        match b {
            Block::Title(t) => {
                let _ = writeln!(o, "# {t}\n");
            }
            Block::Section(t) => {
                let _ = writeln!(o, "## {t}\n");
            }
            Block::Text(t) => {
                let _ = writeln!(o, "{t}\n");
            }
            Block::List(items) => {
                if items.is_empty() {
                    continue;
                }
                for i in items {
                    let _ = writeln!(o, "- {i}");
                }
                o.push('\n');
            }
            Block::Table(t) => md_table(&mut o, t),
            Block::Figure { path, caption } => {
                let _ = writeln!(o, "![{caption}]({path})\n");
            }
        }
    }
    o
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|")
}

fn md_table(o: &mut String, t: &Table) {
    let _ = writeln!(o, "*{}*\n", t.caption.replace('*', "\\*"));
    let head: Vec<String> = t.columns.iter().map(|c| md_cell(c)).collect();
    let _ = writeln!(o, "| {} |", head.join(" | "));
    let _ = writeln!(o, "|{}", "---|".repeat(t.columns.len()));
    for r in &t.rows {
        let cells: Vec<String> = r.iter().map(|c| md_cell(c)).collect();
        let _ = writeln!(o, "| {} |", cells.join(" | "));
    }
    o.push('\n');
}

/// Escapes text for LaTeX; inline `code` becomes \texttt, and the few
/// non-ASCII symbols reports use become math or text commands, so the
/// document compiles with pdflatex and no extra packages but booktabs.
pub fn tex_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 8);
    let mut in_code = false;
    for c in s.chars() {
        match c {
            '`' => {
                o.push_str(if in_code { "}" } else { "\\texttt{" });
                in_code = !in_code;
            }
            '\\' => o.push_str("\\textbackslash{}"),
            '&' | '%' | '$' | '#' | '_' | '{' | '}' => {
                o.push('\\');
                o.push(c);
            }
            '~' => o.push_str("\\textasciitilde{}"),
            '^' => o.push_str("\\textasciicircum{}"),
            '×' => o.push_str("$\\times$"),
            '–' => o.push_str("--"),
            '—' => o.push_str("---"),
            '†' => o.push_str("\\dag{}"),
            '‡' => o.push_str("\\ddag{}"),
            '→' => o.push_str("$\\rightarrow$"),
            '≤' => o.push_str("$\\leq$"),
            '≥' => o.push_str("$\\geq$"),
            '…' => o.push_str("\\ldots{}"),
            '·' => o.push_str("$\\cdot$"),
            '°' => o.push_str("$^\\circ$"),
            '±' => o.push_str("$\\pm$"),
            '<' => o.push_str("\\textless{}"),
            '>' => o.push_str("\\textgreater{}"),
            c if c.is_ascii() => o.push(c),
            // Anything else (accented names, CJK) is kept; an engine with
            // unicode input (lualatex, xelatex) handles it.
            c => o.push(c),
        }
    }
    if in_code {
        o.push('}');
    }
    o
}

/// A standalone LaTeX document: booktabs tables with captions.
pub fn latex(blocks: &[Block]) -> String {
    let mut o = String::from(
        "\\documentclass{article}\n\\usepackage[T1]{fontenc}\n\\usepackage[utf8]{inputenc}\n\\usepackage{booktabs}\n\\usepackage{caption}\n\\usepackage{graphicx}\n\\usepackage[margin=2cm,landscape]{geometry}\n\\begin{document}\n\n",
    );
    for b in blocks {
        match b {
            Block::Title(t) => {
                let _ = writeln!(o, "\\section*{{{}}}\n", tex_escape(t));
            }
            Block::Section(t) => {
                let _ = writeln!(o, "\\subsection*{{{}}}\n", tex_escape(t));
            }
            Block::Text(t) => {
                let _ = writeln!(o, "{}\n", tex_escape(t));
            }
            Block::List(items) => {
                if items.is_empty() {
                    continue;
                }
                o.push_str("\\begin{itemize}\n");
                for i in items {
                    let _ = writeln!(o, "  \\item {}", tex_escape(i));
                }
                o.push_str("\\end{itemize}\n\n");
            }
            Block::Table(t) => {
                let spec = format!("l{}", "r".repeat(t.columns.len().saturating_sub(1)));
                let _ = writeln!(
                    o,
                    "\\begin{{center}}\n\\captionof*{{table}}{{\\small {}}}\n\\begin{{tabular}}{{{spec}}}\n\\toprule",
                    tex_escape(&t.caption)
                );
                let head: Vec<String> = t.columns.iter().map(|c| tex_escape(c)).collect();
                let _ = writeln!(o, "{} \\\\\n\\midrule", head.join(" & "));
                for r in &t.rows {
                    let cells: Vec<String> = r.iter().map(|c| tex_escape(c)).collect();
                    let _ = writeln!(o, "{} \\\\", cells.join(" & "));
                }
                // Not floats: a report has dozens of tables, and
                // LaTeX runs out of float slots ("too many unprocessed floats").
                o.push_str("\\bottomrule\n\\end{tabular}\n\\end{center}\n\n");
            }
            Block::Figure { path, caption } => {
                // pdflatex reads PNG, not SVG.
                let png = path.strip_suffix(".svg").map(|p| format!("{p}.png"));
                let _ = writeln!(
                    o,
                    "\\begin{{center}}\n\\includegraphics[width=0.6\\linewidth]{{{}}}\n\\captionof*{{figure}}{{{}}}\n\\end{{center}}\n",
                    png.as_deref().unwrap_or(path),
                    tex_escape(caption)
                );
            }
        }
    }
    o.push_str("\\end{document}\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tex_escapes_specials_and_code() {
        assert_eq!(
            tex_escape("`f1_macro2` 50% × 100 – a†"),
            "\\texttt{f1\\_macro2} 50\\% $\\times$ 100 -- a\\dag{}"
        );
        assert_eq!(tex_escape("truth \\ pred"), "truth \\textbackslash{} pred");
    }

    #[test]
    fn both_formats_hold_the_same_cells() {
        let blocks = vec![
            Block::Title("e".into()),
            Block::Table(Table {
                caption: "Pooled".into(),
                columns: vec!["variant".into(), "f1".into()],
                rows: vec![vec!["base".into(), "12.50".into()]],
            }),
        ];
        let md = markdown_of(&blocks);
        let tex = latex(&blocks);
        assert!(md.contains("| base | 12.50 |"), "{md}");
        assert!(tex.contains("base & 12.50 \\\\"), "{tex}");
        assert!(tex.contains("\\begin{tabular}{lr}"), "{tex}");
    }
}
