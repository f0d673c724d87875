//! The data side: reading documents from files, folders and stdin (and, to come,
//! sanitising, de-identification, synthetic reports and training-set preparation).

mod ingest;

pub use ingest::{Document, InputItem, InputOptions, read_inputs};
