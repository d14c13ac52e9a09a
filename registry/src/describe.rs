//! Human-readable kind descriptions for `mer plugins describe`.

use crate::{KindSchema, ParamSpec, ParamType, Value};

/// Renders a kind's role, inputs, ports and parameters as plain text.
pub fn describe_kind(k: &KindSchema) -> String {
    let mut out = format!("{}  ({})\n", k.name, k.role.describe());
    if !k.doc.is_empty() {
        out.push_str(&format!("  {}\n", k.doc));
    }
    if !k.inputs.is_empty() {
        out.push_str("\ninputs:\n");
        for i in &k.inputs {
            let note = if i.variadic {
                " (one or more)"
            } else if i.optional {
                " (optional)"
            } else {
                ""
            };
            out.push_str(&format!("  {}{}  {}\n", i.name, note, i.doc));
        }
    }
    if !k.outputs.is_empty() {
        out.push_str("\nports:\n");
        for (n, p) in k.outputs.iter().enumerate() {
            let d = if n == 0 { " (default)" } else { "" };
            // A conditional port says when it exists, next to its name.
            let when = p
                .when
                .as_ref()
                .map(|c| format!(" (only when {} = {})", c.param, c.equals))
                .unwrap_or_default();
            out.push_str(&format!("  {}{}{}  {}\n", p.name, d, when, p.doc));
        }
    }
    if !k.params.is_empty() {
        out.push_str("\nparameters:\n");
        out.push_str(&describe_params(&k.params));
    }
    out
}

/// The parameter list of a kind or of a recipe block (`train`), one entry
/// per parameter with its type, default and doc, as `mer describe` shows it.
pub fn describe_params(params: &[ParamSpec]) -> String {
    let mut out = String::new();
    for p in params {
        let def = match &p.default {
            None => "required".to_string(),
            Some(v) => format!("default {v}"),
        };
        out.push_str(&format!(
            "  {} : {}, {}\n      {}\n",
            p.name,
            p.ty.describe(),
            def,
            p.doc
        ));
        if let ParamType::Record(fields) = &p.ty {
            for f in fields {
                let def = f
                    .default
                    .as_ref()
                    .map(Value::to_string)
                    .unwrap_or_else(|| "required".into());
                out.push_str(&format!(
                    "      .{} : {}, {}  {}\n",
                    f.name,
                    f.ty.describe(),
                    def,
                    f.doc
                ));
            }
        }
    }
    out
}
