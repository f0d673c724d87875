//! Model names the way Ollama writes them: `[host/][namespace/]model[:tag]`, with the
//! Ollama hub, `library` and `latest` filling in what is left out.

use std::fmt;
use std::path::PathBuf;

use super::OllamaError;

/// The registry Ollama uses when a name carries no host.
pub const DEFAULT_HOST: &str = "registry.ollama.ai";
/// The namespace Ollama uses when a name carries none.
pub const DEFAULT_NAMESPACE: &str = "library";
/// The tag Ollama uses when a name carries none.
pub const DEFAULT_TAG: &str = "latest";

/// A fully spelled-out model name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelName {
    /// Registry host, with a port when it has one (`localhost:5000`).
    pub host: String,
    /// Namespace: the user or organisation (`library` for official models).
    pub namespace: String,
    /// Model.
    pub model: String,
    /// Tag (`latest`, `135m-q4`).
    pub tag: String,
}

impl ModelName {
    /// Parses `[host/][namespace/]model[:tag]`, filling in the defaults.
    pub fn parse(text: &str) -> Result<ModelName, OllamaError> {
        let bad = |reason: &str| OllamaError::BadName { name: text.to_string(), reason: reason.to_string() };
        let (path, tag) = match text.rsplit_once(':') {
            // A colon after the last slash separates the tag; one before it is a host's port.
            Some((path, tag)) if !tag.contains('/') => (path, tag),
            _ => (text, DEFAULT_TAG),
        };
        let parts: Vec<&str> = path.split('/').collect();
        let (host, namespace, model) = match parts.as_slice() {
            [model] => (DEFAULT_HOST, DEFAULT_NAMESPACE, *model),
            [namespace, model] => (DEFAULT_HOST, *namespace, *model),
            [host, namespace, model] => (*host, *namespace, *model),
            _ => return Err(bad("expected [host/][namespace/]model[:tag]")),
        };
        check_host(host).map_err(|r| bad(&r))?;
        check_path_part("namespace", namespace).map_err(|r| bad(&r))?;
        check_path_part("model", model).map_err(|r| bad(&r))?;
        check_tag(tag).map_err(|r| bad(&r))?;
        Ok(ModelName {
            host: host.to_string(),
            namespace: namespace.to_string(),
            model: model.to_string(),
            tag: tag.to_string(),
        })
    }

    /// `namespace/model`: the repository on the registry.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.namespace, self.model)
    }

    /// The manifest's place under a store's `manifests/` folder.
    pub fn manifest_relative_path(&self) -> PathBuf {
        [&self.host, &self.namespace, &self.model, &self.tag].iter().collect()
    }

    /// The same name on another registry.
    pub fn with_host(&self, host: &str) -> ModelName {
        ModelName { host: host.to_string(), ..self.clone() }
    }
}

impl fmt::Display for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}:{}", self.host, self.namespace, self.model, self.tag)
    }
}

/// Registries name repositories in lower case, so namespaces and models must be.
fn check_path_part(what: &str, part: &str) -> Result<(), String> {
    if part.is_empty() || part.len() > 80 {
        return Err(format!("the {what} must be 1 to 80 characters"));
    }
    let first = part.chars().next().unwrap_or(' ');
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err(format!("the {what} {part:?} must start with a lower-case letter or digit"));
    }
    if let Some(c) =
        part.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(*c)))
    {
        return Err(format!(
            "the {what} {part:?} holds {c:?}; registries accept lower-case letters, digits, '.', '_' and '-'"
        ));
    }
    if part.ends_with(['.', '_', '-']) {
        return Err(format!("the {what} {part:?} must end with a letter or digit"));
    }
    Ok(())
}

fn check_tag(tag: &str) -> Result<(), String> {
    if tag.is_empty() || tag.len() > 80 {
        return Err("the tag must be 1 to 80 characters".into());
    }
    let first = tag.chars().next().unwrap_or(' ');
    if !(first.is_ascii_alphanumeric() || first == '_') {
        return Err(format!("the tag {tag:?} must start with a letter, digit or '_'"));
    }
    if let Some(c) = tag.chars().find(|c| !(c.is_ascii_alphanumeric() || "._-".contains(*c))) {
        return Err(format!("the tag {tag:?} holds {c:?}; tags take letters, digits, '.', '_' and '-'"));
    }
    Ok(())
}

fn check_host(host: &str) -> Result<(), String> {
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || ".-".contains(c)) {
        return Err(format!("the host {host:?} is not a host name"));
    }
    if let Some(port) = port
        && port.parse::<u16>().is_err()
    {
        return Err(format!("the host {host:?} has a port that is not a number"));
    }
    Ok(())
}

/// Checks a `--registry HOST[:PORT]` value.
pub fn check_registry_host(host: &str) -> Result<(), OllamaError> {
    check_host(host).map_err(|reason| OllamaError::BadName { name: host.to_string(), reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_in_what_is_left_out() {
        let name = ModelName::parse("smollm2").unwrap();
        assert_eq!(name.to_string(), "registry.ollama.ai/library/smollm2:latest");
        let name = ModelName::parse("clinic/discharge:135m-q4").unwrap();
        assert_eq!(
            (name.namespace.as_str(), name.model.as_str(), name.tag.as_str()),
            ("clinic", "discharge", "135m-q4")
        );
        assert_eq!(name.repository(), "clinic/discharge");
        let name = ModelName::parse("localhost:5000/clinic/discharge").unwrap();
        assert_eq!(name.host, "localhost:5000");
        assert_eq!(name.tag, "latest");
        assert_eq!(name.manifest_relative_path(), PathBuf::from("localhost:5000/clinic/discharge/latest"));
    }

    #[test]
    fn bad_names_say_why() {
        for (text, expected) in [
            ("Clinic/model:1", "must start with a lower-case"),
            ("clinic/mOdel", "holds 'O'"),
            ("a/b/c/d", "expected [host/][namespace/]model[:tag]"),
            ("clinic/model:", "tag must be 1 to 80"),
            ("clinic/model:a b", "holds ' '"),
            ("clinic/mo del", "holds ' '"),
            ("clinic/", "the model must be 1 to 80"),
            ("host:port/ns/model", "port that is not a number"),
            ("ns/model-", "must end with a letter or digit"),
        ] {
            let err = ModelName::parse(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
