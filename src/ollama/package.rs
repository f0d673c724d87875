//! Building a model into a store: the GGUF, adapters, template, system prompt, parameters,
//! licence and messages each become a blob; the config blob and manifest tie them together.

use std::path::{Path, PathBuf};

use super::OllamaError;
use super::manifest::{self, Layer, Manifest, ModelConfig, RootFs};
use super::modelfile::{Message, Modelfile};
use super::name::ModelName;
use super::params::Parameters;
use super::store::{Store, digest_hex, digest_of};
use super::template::{ChatFamily, derive_template};
use crate::gguf::{AdapterProblem, GgufFile, LoadScope, ModelSummary, lora_pairs};

/// Where the prompt template comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateChoice {
    /// Derived from the GGUF's chat template, with the family's stop strings; a GGUF without
    /// one gets Ollama's default template ([`OLLAMA_DEFAULT_TEMPLATE`]), with a note.
    Auto,
    /// Given verbatim (a Go template).
    Given(String),
    /// A named chat family's template and stops (`--chat-template NAME`).
    Family(ChatFamily),
    /// Derived from this Jinja chat template (`--chat-template FILE`).
    Jinja(String),
    /// Plain text: Ollama's default template (`--chat-template none`).
    Plain,
}

/// The template Ollama itself uses for a model that brings none: the prompt as it is.
pub const OLLAMA_DEFAULT_TEMPLATE: &str = "{{ .Prompt }}";

/// The note for a GGUF without a chat template built with [`TemplateChoice::Auto`].
pub const DEFAULT_TEMPLATE_NOTE: &str = "the GGUF has no chat template: the model gets Ollama's default template `{{ .Prompt }}` (plain text), as Ollama gives it; choose one with --chat-template NAME|FILE";

/// Everything a model is built from.
#[derive(Debug, Clone)]
pub struct ModelRecipe {
    /// The GGUF weights.
    pub model: PathBuf,
    /// LoRA adapters (GGUF) for the same architecture.
    pub adapters: Vec<PathBuf>,
    /// The prompt template.
    pub template: TemplateChoice,
    /// The default system prompt.
    pub system: Option<String>,
    /// Run parameters; stop strings of a derived template are added when none are given.
    pub parameters: Parameters,
    /// Licence texts.
    pub licenses: Vec<String>,
    /// A conversation to start from.
    pub messages: Vec<Message>,
}

impl ModelRecipe {
    /// A recipe from a parsed Modelfile whose paths are relative to `base_dir`.
    pub fn from_modelfile(modelfile: &Modelfile, base_dir: &Path) -> Result<ModelRecipe, OllamaError> {
        let resolve = |p: &str| {
            let path = Path::new(p);
            if path.is_absolute() { path.to_path_buf() } else { base_dir.join(path) }
        };
        let mut parameters = Parameters::default();
        for (name, value) in &modelfile.parameters {
            parameters.set(name, value)?;
        }
        Ok(ModelRecipe {
            model: resolve(&modelfile.from),
            adapters: modelfile.adapters.iter().map(|a| resolve(a)).collect(),
            template: modelfile.template.clone().map_or(TemplateChoice::Auto, TemplateChoice::Given),
            system: modelfile.system.clone(),
            parameters,
            licenses: modelfile.licenses.clone(),
            messages: modelfile.messages.clone(),
        })
    }
}

/// A model written into a store.
#[derive(Debug, Clone)]
pub struct BuiltModel {
    /// Its name.
    pub name: ModelName,
    /// Its manifest.
    pub manifest: Manifest,
    /// `sha256:` of the manifest bytes.
    pub manifest_digest: String,
    /// A Modelfile that rebuilds it from the store's blobs (paths relative to the store).
    pub modelfile: Modelfile,
    /// The config blob.
    pub config: ModelConfig,
    /// What the caller should tell the user (a default template chosen).
    pub notes: Vec<String>,
}

/// Builds `recipe` into `store` under `name`. Every input is checked before anything is
/// written; the manifest is written last, so a failure leaves no model behind.
pub fn build_model(store: &Store, name: &ModelName, recipe: &ModelRecipe) -> Result<BuiltModel, OllamaError> {
    let model = open_gguf(&recipe.model, "model")?;
    if model.get_str("general.type") == Some("adapter") {
        return Err(OllamaError::NotAModel { path: recipe.model.clone() });
    }
    let architecture = model
        .architecture()
        .ok_or_else(|| OllamaError::NoArchitecture { path: recipe.model.clone() })?
        .to_string();
    // Ollama hands the file to llama.cpp: refuse what its loader would abort on.
    model.check_loadable(LoadScope::Everything)?;
    let mut families = vec![architecture.clone()];
    for adapter_path in &recipe.adapters {
        let adapter = open_gguf(adapter_path, "adapter")?;
        lora_pairs(&adapter, &model).map_err(|problem| match problem {
            AdapterProblem::Architecture { adapter: adapter_arch, base } => {
                OllamaError::AdapterMismatch { adapter: adapter_path.clone(), adapter_arch, model_arch: base }
            }
            problem => OllamaError::UnusableAdapter { path: adapter_path.clone(), problem },
        })?;
        let adapter_arch = adapter.architecture().unwrap_or("none");
        if !families.iter().any(|f| f == adapter_arch) {
            families.push(adapter_arch.to_string());
        }
    }
    let mut parameters = recipe.parameters.clone();
    let mut notes = Vec::new();
    let template = match &recipe.template {
        TemplateChoice::Given(text) => text.clone(),
        TemplateChoice::Auto if model.get_str("tokenizer.chat_template").is_none() => {
            notes.push(DEFAULT_TEMPLATE_NOTE.to_string());
            OLLAMA_DEFAULT_TEMPLATE.to_string()
        }
        TemplateChoice::Auto => {
            let (template, stops) = derive_template(model.get_str("tokenizer.chat_template"))?;
            parameters.default_stops(stops);
            template
        }
        TemplateChoice::Jinja(jinja) => {
            let (template, stops) = derive_template(Some(jinja))?;
            parameters.default_stops(stops);
            template
        }
        TemplateChoice::Family(family) => {
            parameters.default_stops(family.stops());
            family.go_template().to_string()
        }
        TemplateChoice::Plain => OLLAMA_DEFAULT_TEMPLATE.to_string(),
    };
    let summary = ModelSummary::of(&model);

    let mut layers = Vec::new();
    let (model_digest, model_size) = store.put_blob_file(&recipe.model)?;
    layers.push(Layer {
        media_type: manifest::MODEL_MEDIA_TYPE.into(),
        digest: model_digest,
        size: model_size,
    });
    for adapter in &recipe.adapters {
        let (digest, size) = store.put_blob_file(adapter)?;
        layers.push(Layer { media_type: manifest::ADAPTER_MEDIA_TYPE.into(), digest, size });
    }
    let mut text_layer = |media_type: &str, bytes: &[u8]| -> Result<(), OllamaError> {
        let digest = store.put_blob_bytes(bytes)?;
        layers.push(Layer { media_type: media_type.into(), digest, size: bytes.len() as u64 });
        Ok(())
    };
    text_layer(manifest::TEMPLATE_MEDIA_TYPE, template.as_bytes())?;
    if let Some(system) = &recipe.system {
        text_layer(manifest::SYSTEM_MEDIA_TYPE, system.as_bytes())?;
    }
    if !parameters.is_empty() {
        text_layer(manifest::PARAMS_MEDIA_TYPE, &parameters.to_json())?;
    }
    for license in &recipe.licenses {
        text_layer(manifest::LICENSE_MEDIA_TYPE, license.as_bytes())?;
    }
    if !recipe.messages.is_empty() {
        let json = serde_json::to_vec(&recipe.messages).expect("messages always serialise");
        text_layer(manifest::MESSAGES_MEDIA_TYPE, &json)?;
    }

    let config = ModelConfig {
        model_format: "gguf".into(),
        model_family: architecture,
        model_families: families,
        model_type: manifest::parameter_size(summary.parameters),
        file_type: summary.file_type.clone().unwrap_or_else(|| "unknown".into()),
        architecture: manifest::go_architecture().into(),
        os: std::env::consts::OS.into(),
        rootfs: RootFs { kind: "layers".into(), diff_ids: layers.iter().map(|l| l.digest.clone()).collect() },
    };
    let config_bytes = config.to_json();
    let config_digest = store.put_blob_bytes(&config_bytes)?;
    let manifest = Manifest::new(
        Layer {
            media_type: manifest::CONFIG_MEDIA_TYPE.into(),
            digest: config_digest,
            size: config_bytes.len() as u64,
        },
        layers,
    );
    let manifest_bytes = manifest.to_json();
    store.put_manifest(name, &manifest_bytes)?;

    let blob_ref =
        |layer: &Layer| format!("./blobs/sha256-{}", digest_hex(&layer.digest).unwrap_or_default());
    let modelfile = Modelfile {
        from: blob_ref(&manifest.layers[0]),
        adapters: manifest
            .layers
            .iter()
            .filter(|l| l.media_type == manifest::ADAPTER_MEDIA_TYPE)
            .map(blob_ref)
            .collect(),
        template: Some(template),
        system: recipe.system.clone(),
        parameters: parameters.modelfile_lines(),
        licenses: recipe.licenses.clone(),
        messages: recipe.messages.clone(),
    };
    Ok(BuiltModel {
        name: name.clone(),
        manifest_digest: digest_of(&manifest_bytes),
        manifest,
        modelfile,
        config,
        notes,
    })
}

fn open_gguf(path: &Path, what: &str) -> Result<GgufFile, OllamaError> {
    if !path.exists() && what == "model" && path.extension().is_none() {
        return Err(OllamaError::MissingFile {
            what: "model".into(),
            path: path.to_path_buf(),
            hint: "; FROM must name a GGUF file (building on a model already in a store is not supported)"
                .into(),
        });
    }
    if !path.exists() {
        return Err(OllamaError::MissingFile {
            what: what.to_string(),
            path: path.to_path_buf(),
            hint: String::new(),
        });
    }
    GgufFile::open(path).map_err(|source| OllamaError::Gguf { source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::tiny_model_path;

    fn recipe() -> ModelRecipe {
        ModelRecipe {
            model: tiny_model_path().to_path_buf(),
            adapters: vec![],
            template: TemplateChoice::Auto,
            system: Some("You summarise discharge letters.".into()),
            parameters: Parameters::default(),
            licenses: vec!["Apache-2.0".into()],
            messages: vec![Message::new("user", "hello").unwrap()],
        }
    }

    #[test]
    fn the_tiny_model_builds_into_a_store_with_every_layer() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::at(dir.path());
        let name = ModelName::parse("clinic/tiny:test").unwrap();
        let built = build_model(&store, &name, &recipe()).unwrap();
        let media: Vec<&str> = built.manifest.layers.iter().map(|l| l.media_type.as_str()).collect();
        assert_eq!(
            media,
            [
                manifest::MODEL_MEDIA_TYPE,
                manifest::TEMPLATE_MEDIA_TYPE,
                manifest::SYSTEM_MEDIA_TYPE,
                manifest::PARAMS_MEDIA_TYPE,
                manifest::LICENSE_MEDIA_TYPE,
                manifest::MESSAGES_MEDIA_TYPE
            ]
        );
        let model_layer = &built.manifest.layers[0];
        assert_eq!(model_layer.size, std::fs::metadata(tiny_model_path()).unwrap().len());
        let params = std::fs::read(store.blob_path(&built.manifest.layers[3].digest).unwrap()).unwrap();
        assert_eq!(params, br#"{"stop":["<|im_start|>","<|im_end|>"]}"#, "ChatML stops from the GGUF");
        assert_eq!(built.config.model_family, "llama");
        assert_eq!(built.config.file_type, "F32");
        let (stored, bytes) = store.manifest(&name).unwrap();
        assert_eq!(stored, built.manifest);
        assert_eq!(digest_of(&bytes), built.manifest_digest);
        for blob in built.manifest.blobs() {
            let bytes = std::fs::read(store.blob_path(&blob.digest).unwrap()).unwrap();
            assert_eq!(digest_of(&bytes), blob.digest);
        }
        assert_eq!(built.config.rootfs.diff_ids.len(), 6);
        // The Modelfile it writes builds the same model again from the store's own files.
        let again =
            ModelRecipe::from_modelfile(&Modelfile::parse(&built.modelfile.print()).unwrap(), dir.path())
                .unwrap();
        let rebuilt = build_model(&store, &name, &again).unwrap();
        assert_eq!(rebuilt.manifest_digest, built.manifest_digest);
    }

    /// A LoRA adapter for `blk.0.attn_q.weight` of the tiny model, B being `out` wide.
    fn adapter(path: &Path, architecture: &str, general_type: &str, out: u64) {
        use crate::gguf::{GgmlType, MetadataValue, TensorSpec, write_gguf};
        let text = |s: &str| MetadataValue::String(s.into());
        let metadata = vec![
            ("general.architecture".to_string(), text(architecture)),
            ("general.type".to_string(), text(general_type)),
            ("adapter.type".to_string(), text("lora")),
        ];
        let specs = [("lora_a", vec![64, 2]), ("lora_b", vec![2, out])].map(|(half, dims)| TensorSpec {
            name: format!("blk.0.attn_q.weight.{half}"),
            dims,
            ggml_type: GgmlType::F32,
        });
        let mut file = std::fs::File::create(path).unwrap();
        write_gguf(&mut file, &metadata, &specs, |i, out| {
            std::io::Write::write_all(out, &vec![0u8; specs[i].n_bytes().unwrap() as usize])
        })
        .unwrap();
    }

    fn build_with_adapter(dir: &Path, adapter: PathBuf) -> Result<BuiltModel, OllamaError> {
        let store = Store::at(dir.join("store"));
        build_model(
            &store,
            &ModelName::parse("clinic/tiny").unwrap(),
            &ModelRecipe { adapters: vec![adapter], ..recipe() },
        )
    }

    #[test]
    fn an_adapter_of_another_architecture_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qwen-adapter.gguf");
        adapter(&path, "qwen2", "adapter", 64);
        let err = build_with_adapter(dir.path(), path).unwrap_err();
        assert!(matches!(err, OllamaError::AdapterMismatch { .. }), "{err}");
        assert!(err.to_string().contains("qwen2") && err.to_string().contains("llama"), "{err}");
        assert!(!dir.path().join("store").exists(), "nothing written");
    }

    /// What Ollama's llama.cpp would refuse, or apply to the wrong weights, is refused here.
    #[test]
    fn a_full_model_or_a_wrong_shape_as_adapter_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let wrong_shape = dir.path().join("wide.gguf");
        adapter(&wrong_shape, "llama", "adapter", 48);
        let mislabelled = dir.path().join("model-typed.gguf");
        adapter(&mislabelled, "llama", "model", 64);
        for (path, expected) in [
            (tiny_model_path().to_path_buf(), "not a LoRA adapter (general.type = missing"),
            (mislabelled, "not a LoRA adapter (general.type = \"model\""),
            (
                wrong_shape,
                "blk.0.attn_q.weight: lora_a [64, 2] and lora_b [2, 48] do not fit the base's [64, 64]",
            ),
        ] {
            let err = build_with_adapter(dir.path(), path.clone()).unwrap_err();
            assert!(matches!(err, OllamaError::UnusableAdapter { .. }), "{err}");
            assert!(err.to_string().contains(expected), "{}: {err}", path.display());
            assert!(!dir.path().join("store").exists(), "nothing written");
        }
        let fitting = dir.path().join("fits.gguf");
        adapter(&fitting, "llama", "adapter", 64);
        let built = build_with_adapter(dir.path(), fitting).unwrap();
        assert!(built.manifest.layers.iter().any(|l| l.media_type == manifest::ADAPTER_MEDIA_TYPE));
    }

    #[test]
    fn a_model_llama_cpp_would_abort_on_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("l0.gguf");
        let mut bytes = std::fs::read(tiny_model_path()).unwrap();
        // The tiny model's llama.block_count, 2, becomes 0 in place.
        let key = b"llama.block_count";
        let at = bytes.windows(key.len()).position(|w| w == key).unwrap() + key.len() + 4;
        bytes[at..at + 4].copy_from_slice(&0u32.to_le_bytes());
        std::fs::write(&model, bytes).unwrap();
        let store = Store::at(dir.path().join("store"));
        let err = build_model(
            &store,
            &ModelName::parse("clinic/tiny").unwrap(),
            &ModelRecipe { model, ..recipe() },
        )
        .unwrap_err();
        assert!(err.to_string().contains("llama.block_count is 0"), "{err}");
        assert!(!dir.path().join("store").exists(), "nothing written");
    }
}
