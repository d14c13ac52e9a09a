//! `mer-engine`: the engine's crates under one name. Each has one job and
//! depends only on the ones below it:
//!
//! - [`store`] (`mer-store`): run-store paths, run records, atomic writes;
//! - [`data`] (`mer-data`): dataset kinds, loaders, the generator, flow, video;
//! - [`nn`], [`llm`], [`vision`], [`loss`], [`metrics`], [`protocols`] (`mer-nn`): layers,
//!   LLM bodies, losses, metrics and protocols on candle;
//! - [`report`], [`tracking`], [`net`], [`artefacts`] (`mer-report`):
//!   reports, MLflow, HTTP, pretrained files; no candle;
//! - [`exec`], [`optim`], [`runner`], [`driver`], [`slurm`], [`towers`]
//!   (`mer-train`): training, the experiment driver, frozen-tower tools and
//!   the builtin registry.

#![warn(missing_docs)]

pub use mer_data as data;
pub use mer_nn::{checkpoint, layers as nn, llm, loss, metrics, protocols, vision};
pub use mer_report as report;
pub use mer_report::{artefacts, net, tracking};
pub use mer_store as store;
pub use mer_train::{all, builtin_registry, driver, exec, optim, runner, slurm, towers};
