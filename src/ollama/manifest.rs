//! The manifest and config blob of an Ollama model, as the registry and the store hold them.

use serde::{Deserialize, Serialize};

use super::OllamaError;

/// The manifest's own media type (Docker image manifest, schema 2).
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// The config blob's media type.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.docker.container.image.v1+json";
/// The GGUF weights.
pub const MODEL_MEDIA_TYPE: &str = "application/vnd.ollama.image.model";
/// A LoRA adapter in GGUF.
pub const ADAPTER_MEDIA_TYPE: &str = "application/vnd.ollama.image.adapter";
/// The Go prompt template.
pub const TEMPLATE_MEDIA_TYPE: &str = "application/vnd.ollama.image.template";
/// The default system prompt.
pub const SYSTEM_MEDIA_TYPE: &str = "application/vnd.ollama.image.system";
/// Run parameters, a JSON object.
pub const PARAMS_MEDIA_TYPE: &str = "application/vnd.ollama.image.params";
/// Licence text.
pub const LICENSE_MEDIA_TYPE: &str = "application/vnd.ollama.image.license";
/// Conversation to start from, a JSON array of messages.
pub const MESSAGES_MEDIA_TYPE: &str = "application/vnd.ollama.image.messages";

/// A manifest: the config blob and the layers, each by digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// [`MANIFEST_MEDIA_TYPE`].
    pub media_type: String,
    /// The config blob.
    pub config: Layer,
    /// The layers, weights first.
    pub layers: Vec<Layer>,
}

/// One blob a manifest refers to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Layer {
    /// What the blob holds.
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Bytes.
    pub size: u64,
}

impl Manifest {
    /// A manifest over `config` and `layers`.
    pub fn new(config: Layer, layers: Vec<Layer>) -> Manifest {
        Manifest { schema_version: 2, media_type: MANIFEST_MEDIA_TYPE.to_string(), config, layers }
    }

    /// Reads a manifest, refusing ones that are not schema 2 or name a malformed digest.
    pub fn from_json(bytes: &[u8]) -> Result<Manifest, OllamaError> {
        let manifest: Manifest =
            serde_json::from_slice(bytes).map_err(|e| OllamaError::BadManifest { reason: e.to_string() })?;
        if manifest.schema_version != 2 {
            return Err(OllamaError::BadManifest {
                reason: format!("schemaVersion is {}; only 2 is understood", manifest.schema_version),
            });
        }
        for layer in manifest.blobs() {
            if super::store::digest_hex(&layer.digest).is_none() {
                return Err(OllamaError::BadManifest {
                    reason: format!("{:?} is not a sha256 digest", layer.digest),
                });
            }
        }
        Ok(manifest)
    }

    /// The bytes stored and pushed: compact JSON, as Ollama writes it.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a manifest always serialises")
    }

    /// Config first, then the layers: every blob the manifest needs.
    pub fn blobs(&self) -> impl Iterator<Item = &Layer> {
        std::iter::once(&self.config).chain(&self.layers)
    }

    /// The layer of a media type, if there is one.
    pub fn layer(&self, media_type: &str) -> Option<&Layer> {
        self.layers.iter().find(|l| l.media_type == media_type)
    }
}

/// The config blob: what `ollama show` and `ollama list` report about the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// `gguf`.
    pub model_format: String,
    /// `general.architecture` of the weights (`llama`).
    pub model_family: String,
    /// The families of the weights and adapters.
    pub model_families: Vec<String>,
    /// Parameter count, as Ollama shows it (`135M`).
    pub model_type: String,
    /// Quantization (`Q4_K_M`).
    pub file_type: String,
    /// CPU architecture, in Go's spelling (`amd64`); required by the image spec.
    pub architecture: String,
    /// Operating system (`linux`); required by the image spec.
    pub os: String,
    /// The layers' digests.
    pub rootfs: RootFs,
}

/// The layer list of the image spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    /// `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The layers' digests, in manifest order.
    pub diff_ids: Vec<String>,
}

impl ModelConfig {
    /// The bytes of the config blob.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a config always serialises")
    }
}

/// The CPU architecture in Go's spelling, which the image spec uses.
pub fn go_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// A parameter count the way Ollama shows it: `135M`, `1.7B`, `8B`.
pub fn parameter_size(parameters: u64) -> String {
    let n = parameters as f64;
    let (value, unit) = if n >= 1e9 {
        (n / 1e9, "B")
    } else if n >= 1e6 {
        (n / 1e6, "M")
    } else if n >= 1e3 {
        (n / 1e3, "K")
    } else {
        return parameters.to_string();
    };
    // Three significant digits at most, without a trailing ".0".
    let text = if value >= 10.0 { format!("{value:.0}") } else { format!("{value:.1}") };
    format!("{}{unit}", text.strip_suffix(".0").unwrap_or(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    /// Written out by hand from the schema 2 manifest spec and Ollama's media types.
    const HAND_CHECKED_MANIFEST: &str = concat!(
        r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","#,
        r#""config":{"mediaType":"application/vnd.docker.container.image.v1+json","#,
        r#""digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","size":10},"#,
        r#""layers":[{"mediaType":"application/vnd.ollama.image.model","#,
        r#""digest":"sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","size":2048},"#,
        r#"{"mediaType":"application/vnd.ollama.image.params","#,
        r#""digest":"sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc","size":30}]}"#
    );

    #[test]
    fn manifest_prints_and_parses_the_hand_checked_example() {
        let manifest = Manifest::new(
            Layer { media_type: CONFIG_MEDIA_TYPE.into(), digest: sha('a'), size: 10 },
            vec![
                Layer { media_type: MODEL_MEDIA_TYPE.into(), digest: sha('b'), size: 2048 },
                Layer { media_type: PARAMS_MEDIA_TYPE.into(), digest: sha('c'), size: 30 },
            ],
        );
        assert_eq!(String::from_utf8(manifest.to_json()).unwrap(), HAND_CHECKED_MANIFEST);
        assert_eq!(Manifest::from_json(HAND_CHECKED_MANIFEST.as_bytes()).unwrap(), manifest);
        assert_eq!(manifest.blobs().count(), 3);
        assert_eq!(manifest.layer(PARAMS_MEDIA_TYPE).unwrap().size, 30);
    }

    #[test]
    fn manifests_of_other_schemas_or_digests_are_refused() {
        let v1 = HAND_CHECKED_MANIFEST.replace("\"schemaVersion\":2", "\"schemaVersion\":1");
        assert!(Manifest::from_json(v1.as_bytes()).unwrap_err().to_string().contains("only 2"));
        let md5 = HAND_CHECKED_MANIFEST.replacen("sha256:aaaa", "md5:aaaa", 1);
        assert!(Manifest::from_json(md5.as_bytes()).unwrap_err().to_string().contains("not a sha256 digest"));
        assert!(Manifest::from_json(b"<html>").is_err());
    }

    #[test]
    fn config_prints_the_hand_checked_example() {
        let config = ModelConfig {
            model_format: "gguf".into(),
            model_family: "llama".into(),
            model_families: vec!["llama".into()],
            model_type: "135M".into(),
            file_type: "Q4_K_M".into(),
            architecture: "amd64".into(),
            os: "linux".into(),
            rootfs: RootFs { kind: "layers".into(), diff_ids: vec![sha('b')] },
        };
        let expected = concat!(
            r#"{"model_format":"gguf","model_family":"llama","model_families":["llama"],"#,
            r#""model_type":"135M","file_type":"Q4_K_M","architecture":"amd64","os":"linux","#,
            r#""rootfs":{"type":"layers","diff_ids":["sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"]}}"#
        );
        assert_eq!(String::from_utf8(config.to_json()).unwrap(), expected);
        let back: ModelConfig = serde_json::from_str(expected).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn parameter_sizes_read_like_ollama_shows_them() {
        assert_eq!(parameter_size(134_515_008), "135M");
        assert_eq!(parameter_size(1_711_376_384), "1.7B");
        assert_eq!(parameter_size(8_030_261_248), "8B");
        assert_eq!(parameter_size(41_000), "41K");
        assert_eq!(parameter_size(360_000_000), "360M");
        assert_eq!(parameter_size(512), "512");
    }
}
