//! Plain values: the canonical, span-free form of a resolved recipe.
//!
//! This is what is serialised to RON and hashed, and what components and
//! schemas see. Maps are `BTreeMap`s so that the serialisation, and hence
//! the recipe's BLAKE3 identity, does not depend on the order keys were
//! written in.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A resolved value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Value>),
    Map(BTreeMap<String, Value>),
    /// A port reference such as `cnn.mid` (only valid as a component input).
    Ref(String),
    /// A component: `kind(inputs) { params }`.
    Call(CallValue),
    /// A weighted sum of components (losses).
    Sum(Vec<WeightedCall>),
}

/// A component invocation in canonical form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallValue {
    pub kind: String,
    pub inputs: Vec<InputValue>,
    pub params: BTreeMap<String, Value>,
}

/// One input of a call; `name` is set for keyword inputs (`prefix = token`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputValue {
    pub name: Option<String>,
    pub value: Value,
}

/// A term of a weighted loss sum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightedCall {
    pub weight: f64,
    pub call: CallValue,
}

impl Value {
    /// A short type name for messages ("expected a float, got a string").
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "none",
            Value::Bool(_) => "a bool",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Str(_) => "a string",
            Value::List(_) => "a list",
            Value::Map(_) => "a map",
            Value::Ref(_) => "a reference",
            Value::Call(_) => "a component",
            Value::Sum(_) => "a weighted sum",
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The strings of a list (its other items skipped); `None` when this
    /// is not a list.
    pub fn as_strings(&self) -> Option<Vec<String>> {
        match self {
            Value::List(l) => Some(
                l.iter()
                    .filter_map(|v| match v {
                        Value::Str(s) => Some(s.clone()),
                        _ => None,
                    })
                    .collect(),
            ),
            _ => None,
        }
    }
}

/// Recipe syntax, so that rendered values can be pasted back into a recipe
/// or a `--set`.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::None => f.write_str("none"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => {
                if x.is_finite() && x.fract() == 0.0 && x.abs() < 1e15 {
                    write!(f, "{x:.1}")
                } else {
                    write!(f, "{x:?}")
                }
            }
            Value::Str(s) => write!(f, "{s:?}"),
            Value::List(l) => {
                f.write_str("[")?;
                for (i, v) in l.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Value::Map(m) => {
                f.write_str("{ ")?;
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k} = {v}")?;
                }
                f.write_str(" }")
            }
            Value::Ref(r) => f.write_str(r),
            Value::Call(c) => write!(f, "{c}"),
            Value::Sum(terms) => {
                for (i, t) in terms.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" + ")?;
                    }
                    write!(f, "{} * {}", Value::Float(t.weight), t.call)?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for CallValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.kind)?;
        if !self.inputs.is_empty() {
            f.write_str("(")?;
            for (i, inp) in self.inputs.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                if let Some(n) = &inp.name {
                    write!(f, "{n} = ")?;
                }
                write!(f, "{}", inp.value)?;
            }
            f.write_str(")")?;
        }
        write!(f, " {}", Value::Map(self.params.clone()))
    }
}

/// Serialises any value as canonical RON (fixed pretty layout).
pub fn to_ron<T: Serialize>(v: &T) -> Result<String, ron::Error> {
    let cfg = ron::ser::PrettyConfig::new()
        .depth_limit(64)
        .indentor("  ".to_string())
        .struct_names(true);
    ron::ser::to_string_pretty(v, cfg)
}

/// BLAKE3 of a canonical serialisation, as lowercase hex.
pub fn hash_hex(canonical: &str) -> String {
    blake3::hash(canonical.as_bytes()).to_hex().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_recipe_syntax() {
        let mut params = BTreeMap::new();
        params.insert("out".to_string(), Value::Int(8));
        let c = CallValue {
            kind: "nn.linear".into(),
            inputs: vec![InputValue {
                name: None,
                value: Value::Ref("llm.last".into()),
            }],
            params,
        };
        assert_eq!(
            Value::Call(c).to_string(),
            "nn.linear(llm.last) { out = 8 }"
        );
        assert_eq!(Value::Float(3e-5).to_string(), "3e-5");
        assert_eq!(Value::Float(2.0).to_string(), "2.0");
    }

    #[test]
    fn ron_round_trip_is_exact() {
        let v = Value::List(vec![
            Value::Float(0.1),
            Value::Int(-3),
            Value::Str("a\"b".into()),
        ]);
        let s = to_ron(&v).unwrap();
        let back: Value = ron::from_str(&s).unwrap();
        assert_eq!(v, back);
    }
}
