//! Output for people and programs: docker-style tables, `--format` templates, human units.
//!
//! Commands describe each output row as a JSON object whose keys are docker's template
//! field names (`Repository`, `Tag`, `ID`, …) and hand the rows to [`Format::render`].
//! That one path serves the default table, `--format json`, `--format 'table {{.ID}}'`
//! and free templates such as `--format '{{.Repository}}:{{.Tag}}'`.

pub mod error;
pub mod gotemplate;
pub mod progress;
pub mod table;
pub mod template;
pub mod units;

pub use table::Column;
pub use template::{Format, FormatError};
