//! Data: the synthetic generator (a drawn face animated by FACS action
//! units) and, later, loaders for the real corpora in their distributed
//! layouts.

pub mod au;
pub mod dfer_layout;
pub mod face;
pub mod fer_layout;
pub mod me_layout;
pub mod synth;
