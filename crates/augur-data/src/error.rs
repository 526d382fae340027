//! Every failure names the file (or Hub split) and, when it is about one, the row or line, the
//! column and the value.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A line or row that cannot become a JSON object; `at` is `file:line` or `file: row N`.
    #[error("{at}: {why}")]
    Bad { at: String, why: String },
    /// A file as a whole (not Parquet, an unsupported column type, no rows).
    #[error("{}: {why}", path.display())]
    File { path: PathBuf, why: String },
    /// Boxed: a Hub error is large, and every row read returns this type.
    #[error("dataset {spec}: {source}")]
    Hub {
        spec: String,
        source: Box<augur_hub::HubError>,
    },
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;
