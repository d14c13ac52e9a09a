//! # mer-registry: the SDK every component is written against
//!
//! A *kind* is a named thing a recipe can instantiate: a dataset
//! (`me.casme2`), a model component (`nn.linear`, `au_llm.efp`), a loss, a
//! metric, an optimiser, a scheduler or an evaluation protocol. Each kind
//! declares a [`KindSchema`]: its [`Role`], its inputs, its output ports and
//! its parameters with types, ranges, defaults and docs.
//!
//! `mer check` reads only these schemas, so a recipe is validated, with
//! "did you mean" suggestions and `file:line:col` carets, before any weight
//! is loaded or any tensor is allocated.
//!
//! Kinds live in namespaces (`nn`, `loss`, `au_llm`, ...). mer's own kinds
//! are registered under builtin namespaces; a plugin registers its kinds
//! under its own namespace, which recipes enable with `use NAME`.
//!
//! ```
//! use mer_registry::{Registry, KindBuilder, Role};
//!
//! let mut reg = Registry::new();
//! reg.add_builtin(
//!     KindBuilder::new("nn.linear", Role::Component)
//!         .doc("Affine map over the last dimension.")
//!         .input("x", "features [.., D]")
//!         .output("out", "features [.., out]")
//!         .int("out", None, Some(1), "Output width.")
//!         .bool("bias", true, "Learn an additive bias.")
//!         .build(),
//! ).unwrap();
//! assert!(reg.kind_schema("nn.linear").is_some());
//! ```

pub use mer_dsl::schema::{
    Catalog, FoldRule, InputSpec, KindSchema, Namespace, ParamSpec, ParamType, PortSpec, Role,
};
pub use mer_dsl::value::Value;

mod builder;
mod describe;

pub use builder::KindBuilder;
pub use describe::describe_kind;

use std::collections::{BTreeMap, BTreeSet};

/// Errors raised while registering kinds.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RegistryError {
    /// Two registrations of the same full kind name.
    #[error("kind `{0}` is registered twice")]
    Duplicate(String),
    /// A kind name must be `namespace.name` with identifier segments.
    #[error("kind name `{0}` is not of the form `namespace.name`")]
    BadName(String),
    /// A plugin tried to register a kind outside its own namespace.
    #[error("plugin `{plugin}` may only register kinds under `{plugin}.`, not `{kind}`")]
    ForeignNamespace { plugin: String, kind: String },
}

/// Metadata of a loaded plugin.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginInfo {
    /// The namespace the plugin owns (its `use` name).
    pub name: String,
    pub version: String,
}

/// All kinds known to this process, by full name.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    kinds: BTreeMap<String, KindSchema>,
    builtin_namespaces: BTreeSet<String>,
    plugins: BTreeMap<String, PluginInfo>,
}

fn valid_segment(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

fn check_name(name: &str) -> Result<String, RegistryError> {
    let mut parts = name.split('.');
    let ns = parts.next().unwrap_or("");
    let rest: Vec<&str> = parts.collect();
    if !valid_segment(ns) || rest.is_empty() || !rest.iter().all(|s| valid_segment(s)) {
        return Err(RegistryError::BadName(name.to_string()));
    }
    Ok(ns.to_string())
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers one of mer's own kinds. Its namespace becomes builtin.
    pub fn add_builtin(&mut self, schema: KindSchema) -> Result<(), RegistryError> {
        let ns = check_name(&schema.name)?;
        if self.kinds.contains_key(&schema.name) {
            return Err(RegistryError::Duplicate(schema.name));
        }
        self.builtin_namespaces.insert(ns);
        self.kinds.insert(schema.name.clone(), schema);
        Ok(())
    }

    /// Registers a plugin and its kinds, all of which must live under the
    /// plugin's own namespace so two plugins can never collide.
    pub fn add_plugin(
        &mut self,
        info: PluginInfo,
        kinds: Vec<KindSchema>,
    ) -> Result<(), RegistryError> {
        for k in &kinds {
            let ns = check_name(&k.name)?;
            if ns != info.name {
                return Err(RegistryError::ForeignNamespace {
                    plugin: info.name.clone(),
                    kind: k.name.clone(),
                });
            }
            if self.kinds.contains_key(&k.name) {
                return Err(RegistryError::Duplicate(k.name.clone()));
            }
        }
        for k in kinds {
            self.kinds.insert(k.name.clone(), k);
        }
        self.plugins.insert(info.name.clone(), info);
        Ok(())
    }

    /// The schema of a kind by full name.
    pub fn kind_schema(&self, name: &str) -> Option<&KindSchema> {
        self.kinds.get(name)
    }

    /// Every kind, sorted by name.
    pub fn kinds(&self) -> impl Iterator<Item = &KindSchema> {
        self.kinds.values()
    }

    /// Loaded plugins, sorted by name.
    pub fn plugins(&self) -> impl Iterator<Item = &PluginInfo> {
        self.plugins.values()
    }
}

impl Catalog for Registry {
    fn kind(&self, name: &str) -> Option<&KindSchema> {
        self.kinds.get(name)
    }
    fn kind_names(&self) -> Vec<&str> {
        self.kinds.keys().map(String::as_str).collect()
    }
    fn namespace(&self, ns: &str) -> Namespace {
        if self.plugins.contains_key(ns) {
            Namespace::Plugin
        } else if self.builtin_namespaces.contains(ns) {
            Namespace::Builtin
        } else {
            Namespace::Unknown
        }
    }
    fn plugin_names(&self) -> Vec<String> {
        self.plugins.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(name: &str) -> KindSchema {
        KindBuilder::new(name, Role::Component)
            .output("out", "")
            .build()
    }

    #[test]
    fn rejects_duplicates_and_bad_names() {
        let mut r = Registry::new();
        r.add_builtin(k("nn.linear")).unwrap();
        assert_eq!(
            r.add_builtin(k("nn.linear")),
            Err(RegistryError::Duplicate("nn.linear".into()))
        );
        assert!(matches!(
            r.add_builtin(k("linear")),
            Err(RegistryError::BadName(_))
        ));
        assert!(matches!(
            r.add_builtin(k("nn.9x")),
            Err(RegistryError::BadName(_))
        ));
    }

    #[test]
    fn plugins_own_their_namespace() {
        let mut r = Registry::new();
        let info = PluginInfo {
            name: "au_llm".into(),
            version: "0.1.0".into(),
        };
        assert!(matches!(
            r.add_plugin(info.clone(), vec![k("nn.evil")]),
            Err(RegistryError::ForeignNamespace { .. })
        ));
        r.add_plugin(info, vec![k("au_llm.efp")]).unwrap();
        assert_eq!(r.namespace("au_llm"), Namespace::Plugin);
        assert_eq!(r.namespace("nn"), Namespace::Unknown);
    }
}
