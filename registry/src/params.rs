//! Typed reads of a kind's parameters.
//!
//! `mer check` fills every parameter the recipe leaves out with the
//! default its schema declares (and [`crate::Kind::with_defaults`] does the
//! same for callers that bypass the checker), so an implementation reads
//! values, never invents them: a getter fails with the kind and parameter
//! name instead of falling back. The default lives in the schema only.

use crate::component::BuildError;
use crate::{ParamSpec, ParamType, Value};
use std::collections::BTreeMap;

/// Read-only, typed access to one kind's parameters (defaults filled).
#[derive(Debug, Clone)]
pub struct Params<'a> {
    owner: String,
    map: &'a BTreeMap<String, Value>,
}

impl<'a> Params<'a> {
    /// Wraps `map`, the parameters of `owner` (a kind name such as
    /// `optim.adam`, or a nested record such as `optim.adam.groups.led`;
    /// used in error messages).
    pub fn new(owner: &str, map: &'a BTreeMap<String, Value>) -> Self {
        Params {
            owner: owner.to_string(),
            map,
        }
    }

    /// What these parameters belong to, as given to [`Params::new`].
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The raw map.
    pub fn map(&self) -> &'a BTreeMap<String, Value> {
        self.map
    }

    /// The raw value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&'a Value> {
        self.map.get(name)
    }

    fn wrong(&self, name: &str, what: &str) -> BuildError {
        match self.map.get(name) {
            Some(v) => BuildError(format!("`{}.{name}` must be {what}, got {v}", self.owner)),
            None => BuildError(format!("`{}` needs {what} `{name}`", self.owner)),
        }
    }

    /// A real number (an integer is accepted and widened).
    pub fn float(&self, name: &str) -> Result<f64, BuildError> {
        self.get(name)
            .and_then(Value::as_f64)
            .ok_or_else(|| self.wrong(name, "a number"))
    }

    /// An optional real number: `none` (or an absent key) is `None`.
    pub fn opt_float(&self, name: &str) -> Result<Option<f64>, BuildError> {
        match self.get(name) {
            None | Some(Value::None) => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.wrong(name, "a number or none")),
        }
    }

    /// An integer.
    pub fn int(&self, name: &str) -> Result<i64, BuildError> {
        match self.get(name) {
            Some(Value::Int(i)) => Ok(*i),
            _ => Err(self.wrong(name, "an integer")),
        }
    }

    /// A non-negative integer.
    pub fn usize(&self, name: &str) -> Result<usize, BuildError> {
        usize::try_from(self.int(name)?).map_err(|_| self.wrong(name, "a non-negative integer"))
    }

    /// An optional non-negative integer: `none` (or an absent key) is `None`.
    pub fn opt_usize(&self, name: &str) -> Result<Option<usize>, BuildError> {
        match self.get(name) {
            None | Some(Value::None) => Ok(None),
            Some(_) => self.usize(name).map(Some),
        }
    }

    /// A boolean.
    pub fn bool(&self, name: &str) -> Result<bool, BuildError> {
        match self.get(name) {
            Some(Value::Bool(b)) => Ok(*b),
            _ => Err(self.wrong(name, "a bool")),
        }
    }

    /// A string.
    pub fn str(&self, name: &str) -> Result<&'a str, BuildError> {
        match self.get(name) {
            Some(Value::Str(s)) => Ok(s),
            _ => Err(self.wrong(name, "a string")),
        }
    }

    /// A list of real numbers.
    pub fn floats(&self, name: &str) -> Result<Vec<f64>, BuildError> {
        match self.get(name) {
            Some(Value::List(l)) => l
                .iter()
                .map(Value::as_f64)
                .collect::<Option<Vec<f64>>>()
                .ok_or_else(|| self.wrong(name, "a list of numbers")),
            _ => Err(self.wrong(name, "a list of numbers")),
        }
    }

    /// A list of exactly `N` real numbers (`betas = [0.9, 0.999]`).
    pub fn float_array<const N: usize>(&self, name: &str) -> Result<[f64; N], BuildError> {
        let v = self.floats(name)?;
        <[f64; N]>::try_from(v).map_err(|_| self.wrong(name, &format!("a list of {N} numbers")))
    }

    /// A map of records (`groups = { led = { lr = 0.1 } }`), each entry
    /// readable with the same getters. An absent key is an empty map.
    pub fn records(&self, name: &str) -> Result<Vec<(&'a str, Params<'a>)>, BuildError> {
        match self.get(name) {
            None => Ok(Vec::new()),
            Some(Value::Map(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::Map(r) => Ok((
                        k.as_str(),
                        Params::new(&format!("{}.{name}.{k}", self.owner), r),
                    )),
                    _ => Err(self.wrong(name, "a map of records")),
                })
                .collect(),
            Some(_) => Err(self.wrong(name, "a map of records")),
        }
    }
}

/// `params` with every parameter that `specs` declares a default for and
/// `params` lacks filled in, recursively into records (also inside lists,
/// maps and optionals), as `mer check` fills them.
pub fn fill_defaults(
    specs: &[ParamSpec],
    params: &BTreeMap<String, Value>,
) -> BTreeMap<String, Value> {
    let mut out = params.clone();
    for s in specs {
        match out.get_mut(&s.name) {
            Some(v) => fill_value(&s.ty, v),
            None => {
                if let Some(d) = &s.default {
                    let mut d = d.clone();
                    fill_value(&s.ty, &mut d);
                    out.insert(s.name.clone(), d);
                }
            }
        }
    }
    out
}

fn fill_value(ty: &ParamType, v: &mut Value) {
    match (ty, v) {
        (ParamType::Record(specs), Value::Map(m)) => *m = fill_defaults(specs, m),
        (ParamType::Optional(t), v) => fill_value(t, v),
        (ParamType::List(t), Value::List(items)) => items.iter_mut().for_each(|x| fill_value(t, x)),
        (ParamType::MapOf(t), Value::Map(m)) => m.values_mut().for_each(|x| fill_value(t, x)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn getters_name_the_kind_and_never_invent_a_value() {
        let m = BTreeMap::from([
            ("lr".to_string(), Value::Float(0.1)),
            ("n".to_string(), Value::Int(3)),
            ("b".to_string(), Value::List(vec![Value::Float(0.9)])),
            ("w".to_string(), Value::None),
        ]);
        let p = Params::new("optim.x", &m);
        assert_eq!(p.float("lr"), Ok(0.1));
        assert_eq!(p.float("n"), Ok(3.0));
        assert_eq!(p.usize("n"), Ok(3));
        assert_eq!(p.opt_float("w"), Ok(None));
        let e = p.float("eps").unwrap_err().0;
        assert!(e.contains("`optim.x` needs a number `eps`"), "{e}");
        let e = p.float_array::<2>("b").unwrap_err().0;
        assert!(e.contains("`optim.x.b` must be a list of 2 numbers"), "{e}");
    }

    #[test]
    fn defaults_fill_into_records() {
        let rec = ParamType::MapOf(Box::new(ParamType::Record(vec![ParamSpec {
            name: "freeze".into(),
            ty: ParamType::Bool,
            default: Some(Value::Bool(false)),
            doc: String::new(),
        }])));
        let specs = vec![
            ParamSpec {
                name: "groups".into(),
                ty: rec,
                default: Some(Value::Map(BTreeMap::new())),
                doc: String::new(),
            },
            ParamSpec {
                name: "eps".into(),
                ty: ParamType::Float {
                    min: None,
                    max: None,
                },
                default: Some(Value::Float(1e-8)),
                doc: String::new(),
            },
        ];
        let given = BTreeMap::from([(
            "groups".to_string(),
            Value::Map(BTreeMap::from([(
                "a".to_string(),
                Value::Map(BTreeMap::new()),
            )])),
        )]);
        let full = fill_defaults(&specs, &given);
        assert_eq!(full["eps"], Value::Float(1e-8));
        let groups = Params::new("k", &full).records("groups").unwrap();
        assert_eq!(groups[0].0, "a");
        assert_eq!(groups[0].1.bool("freeze"), Ok(false));
    }
}
