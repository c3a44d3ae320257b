//! [`RequestConfig`]: how the pod asks the model for the next turn.
//!
//! Carried by `SessionStart` (the configuration a session starts with) and by
//! `ConfigChanged` (the configuration from that entry on).

use serde::{Deserialize, Serialize};

/// The model request settings in force for a session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestConfig {
    /// The model name, as the provider spells it.
    pub model: String,
    /// Sampling temperature; `None` leaves the provider's default.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// The most tokens one answer may have; `None` leaves the provider's default.
    #[serde(default)]
    pub max_output_tokens: Option<u32>,
    /// The tools the model may call.
    #[serde(default)]
    pub tools: Vec<ToolSpec>,
}

impl Default for RequestConfig {
    fn default() -> Self {
        Self {
            model: "default".to_owned(),
            temperature: None,
            max_output_tokens: None,
            tools: Vec::new(),
        }
    }
}

/// One tool the model may call: its name, what it does, and the JSON Schema
/// of its arguments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub parameters: serde_json::Value,
}
