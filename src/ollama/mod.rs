//! Ollama without Ollama: package a GGUF (and adapters) as an Ollama model in its store
//! layout, read and write Modelfiles, and push and pull models over the registry protocol.

pub mod auth;
mod manifest;
mod modelfile;
mod name;
mod package;
mod params;
mod registry;
mod store;
mod template;

use std::path::PathBuf;

pub use manifest::{
    ADAPTER_MEDIA_TYPE, CONFIG_MEDIA_TYPE, LICENSE_MEDIA_TYPE, Layer, MANIFEST_MEDIA_TYPE,
    MESSAGES_MEDIA_TYPE, MODEL_MEDIA_TYPE, Manifest, ModelConfig, PARAMS_MEDIA_TYPE, RootFs,
    SYSTEM_MEDIA_TYPE, TEMPLATE_MEDIA_TYPE,
};
pub use modelfile::{MESSAGE_ROLES, Message, Modelfile};
pub use name::{DEFAULT_HOST, ModelName, check_registry_host};
pub use package::{
    BuiltModel, DEFAULT_TEMPLATE_NOTE, ModelRecipe, OLLAMA_DEFAULT_TEMPLATE, TemplateChoice, build_model,
};
pub use params::Parameters;
pub use registry::{PullReport, PushReport, RegistryOptions, TransferEvent, pull, push};
pub use store::{Store, digest_of};
pub use template::{ChatFamily, derive_template};

/// What went wrong packaging, storing or transferring a model.
#[derive(Debug, thiserror::Error)]
pub enum OllamaError {
    /// A model name that Ollama or a registry would refuse.
    #[error("bad model name {name:?}: {reason}")]
    BadName {
        /// The name as given.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// An input file that is not there.
    #[error("the {what} file {path} does not exist{hint}")]
    MissingFile {
        /// `model`, `adapter`, …
        what: String,
        /// The file.
        path: PathBuf,
        /// What to do instead, when there is something to say.
        hint: String,
    },
    /// Reading a GGUF failed.
    #[error(transparent)]
    Gguf {
        /// The cause.
        #[from]
        source: crate::gguf::GgufError,
    },
    /// The weights file is an adapter.
    #[error("{path} is a LoRA adapter, not a model; give it with --adapter (ADAPTER in a Modelfile)")]
    NotAModel {
        /// The file.
        path: PathBuf,
    },
    /// An adapter file that is something else, or does not fit the model.
    #[error("the adapter {path} cannot be used with the model: {problem}")]
    UnusableAdapter {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: crate::gguf::AdapterProblem,
    },
    /// The weights name no architecture.
    #[error("{path} has no general.architecture, so Ollama cannot tell how to run it")]
    NoArchitecture {
        /// The file.
        path: PathBuf,
    },
    /// An adapter made for another architecture.
    #[error(
        "the adapter {adapter} is for the {adapter_arch} architecture but the model is {model_arch}; an adapter must be trained on the model it is packaged with"
    )]
    AdapterMismatch {
        /// The adapter file.
        adapter: PathBuf,
        /// Its architecture.
        adapter_arch: String,
        /// The model's.
        model_arch: String,
    },
    /// No template could be derived.
    #[error(
        "cannot derive an Ollama template: {reason}; give one with --template FILE (TEMPLATE in a Modelfile) or name a family with --chat-template"
    )]
    NoTemplate {
        /// Why not.
        reason: String,
    },
    /// A run parameter Ollama would not accept.
    #[error("parameter {name}: {reason}")]
    BadParameter {
        /// The parameter.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A message with a bad role.
    #[error("bad message: {reason}")]
    BadMessage {
        /// What is wrong.
        reason: String,
    },
    /// A Modelfile that does not parse.
    #[error("Modelfile line {line}: {reason}")]
    BadModelfile {
        /// 1-based line (0: the file as a whole).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A manifest that does not parse or is not one we understand.
    #[error("bad manifest: {reason}")]
    BadManifest {
        /// What is wrong.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Neither `OLLAMA_MODELS` nor `HOME` is set.
    #[error("cannot find the Ollama store: set OLLAMA_MODELS (or HOME)")]
    NoHome,
    /// The model is not in the store.
    #[error("{name} is not in the store {store}")]
    NotInStore {
        /// The model.
        name: String,
        /// The store.
        store: PathBuf,
    },
    /// A manifest refers to a blob the store lacks.
    #[error("the store {store} lacks blob {digest} that the manifest needs")]
    MissingBlob {
        /// The blob.
        digest: String,
        /// The store.
        store: PathBuf,
    },
    /// The registry could not be reached, or kept failing.
    #[error("registry {registry} is unreachable: {reason}")]
    RegistryUnreachable {
        /// `scheme://host`.
        registry: String,
        /// The last failure.
        reason: String,
    },
    /// The registry refused our credentials, or we had none to give.
    #[error("registry {registry} refused access: {reason}")]
    AuthRefused {
        /// `scheme://host`.
        registry: String,
        /// Why.
        reason: String,
    },
    /// The registry answered something unexpected.
    #[error("{what} failed: {reason}")]
    Registry {
        /// The request.
        what: String,
        /// The answer.
        reason: String,
    },
    /// The registry has no such model.
    #[error("{name} is not on {registry}")]
    NotOnRegistry {
        /// `namespace/model:tag`.
        name: String,
        /// `scheme://host`.
        registry: String,
    },
    /// Bytes that do not match their digest.
    #[error("digest mismatch in {what}: expected {expected}, got {actual}; nothing was stored")]
    DigestMismatch {
        /// What was checked.
        what: String,
        /// The digest promised.
        expected: String,
        /// The digest found.
        actual: String,
    },
    /// A transfer broke off.
    #[error("{what}: {reason}")]
    Transfer {
        /// What was transferred.
        what: String,
        /// Why it stopped.
        reason: String,
    },
    /// The signing key cannot be used.
    #[error("cannot use the key {path}: {reason}")]
    BadKey {
        /// The key file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}
