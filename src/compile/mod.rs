//! The passes over a loaded project, one file each:
//!
//! 1. `nodes.rs` builds each node from the project's files, YAML and config trees;
//! 2. `naming.rs` decides where it builds (its relation);
//! 3. `parse.rs` is the parse pass: every model rendered with `execute` false, in parallel, to
//!    learn its config, refs and sources, then the graph (`unit_tests.rs` adds the unit-test
//!    nodes and checks their inputs);
//! 4. `pass.rs` is the compile pass (`Compiler`): a model's SQL on demand, reusing the parse
//!    pass's text when a second render could not differ, with its ephemeral ancestors
//!    injected as CTEs (`ctes.rs`); `resolve.rs` says what `ref()` and `source()` return in
//!    each pass.
//!
//! Neither pass touches the database except through the `Introspect` handle a caller passes in.

mod ctes;
mod naming;
mod nodes;
pub mod outputs;
mod parse;
mod pass;
mod resolve;
pub(crate) mod unit_tests;

pub use ctes::injected_line_shift;
pub use nodes::model_value;
pub use parse::parse;
pub use pass::{Compiler, RenderedHook};
