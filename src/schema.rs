//! The workflow format as a JSON Schema (draft-07, which editors support best), made
//! from the same definitions the decoder and validator use: the field lists of
//! [`crate::workflow`] and every node type's [`NodeSpec`]. A workflow that names it in
//! `"$schema"` gets completion and checks in an editor.
//!
//! A schema sees shapes only: a reference to a node that does not exist, a cycle or a
//! template error is still `pflow validate`'s to find.

use crate::nodes::{self, NodeSpec, OutputKind, ParamKind, ParamSpec};
use crate::workflow::{
    InputType, BATCH_FIELDS, EDGE_FIELDS, INPUT_FIELDS, NODE_FIELDS, OUTPUT_FIELDS, TOP_FIELDS,
};
use serde_json::{json, Map, Value};

/// The whole schema.
pub fn workflow_schema() -> Value {
    let mut definitions = Map::new();
    definitions.insert("node".into(), node_schema());
    definitions.insert(
        "edge".into(),
        object(EDGE_FIELDS, &["from", "to"], edge_field),
    );
    definitions.insert("input".into(), object(INPUT_FIELDS, &[], input_field));
    definitions.insert("output".into(), object(OUTPUT_FIELDS, &[], output_field));
    definitions.insert(
        "batch".into(),
        object(BATCH_FIELDS, &["items"], batch_field),
    );
    definitions.insert(
        "template".into(),
        json!({"type": "string", "pattern": "\\$\\{", "description": "a ${...} template, resolved at run time"}),
    );
    for spec in nodes::REGISTRY {
        definitions.insert(format!("params-{}", spec.name), params_schema(spec));
    }
    let mut top = object(TOP_FIELDS, &["nodes"], top_field);
    if let Value::Object(m) = &mut top {
        m.insert(
            "$schema".into(),
            json!("http://json-schema.org/draft-07/schema#"),
        );
        m.insert("title".into(), json!("pflow workflow"));
        m.insert("definitions".into(), Value::Object(definitions));
    }
    top
}

/// An object with exactly `fields` (each described by `field`), `required` among them.
fn object(fields: &[&str], required: &[&str], field: fn(&str) -> Value) -> Value {
    let properties: Map<String, Value> = fields.iter().map(|f| (f.to_string(), field(f))).collect();
    json!({
        "type": "object",
        "required": required,
        "additionalProperties": false,
        "properties": properties,
    })
}

fn top_field(name: &str) -> Value {
    match name {
        "$schema" => json!({"type": "string"}),
        "ir_version" => json!({"type": "string", "pattern": "^\\d+\\.\\d+\\.\\d+$"}),
        "nodes" => json!({"type": "array", "minItems": 1, "items": {"$ref": "#/definitions/node"}}),
        "edges" => json!({"type": "array", "items": {"$ref": "#/definitions/edge"}}),
        "inputs" => {
            json!({"type": "object", "additionalProperties": {"$ref": "#/definitions/input"}})
        }
        "outputs" => {
            json!({"type": "object", "additionalProperties": {"$ref": "#/definitions/output"}})
        }
        "start_node" => json!({"type": "string"}),
        "template_resolution_mode" => json!({"enum": ["strict", "permissive"]}),
        "strict_env" => json!({"type": "boolean"}),
        _ => unknown(name),
    }
}

fn node_field(name: &str) -> Value {
    let types: Vec<&str> = nodes::REGISTRY.iter().map(|s| s.name).collect();
    let names = json!({"type": "array", "items": {"type": "string"}});
    match name {
        "id" => json!({"type": "string", "minLength": 1}),
        "type" => json!({"enum": types}),
        "purpose" => json!({"type": "string"}),
        "params" => json!({"type": "object"}),
        "batch" => json!({"$ref": "#/definitions/batch"}),
        "cache" => json!({"anyOf": [{"type": "boolean"}, {"type": "null"},
                                    {"type": "string", "pattern": "^\\s*([0-9]+\\s*[A-Za-zµ]+\\s*)+$"}],
                          "description": "true (default), false (run on every build) or a maximum age such as \"1h\""}),
        "reads_env" => {
            json!({"type": "array", "items": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}})
        }
        "reads" | "writes" => names,
        _ => unknown(name),
    }
}

/// A node: its fields, and for each type the params that type takes.
fn node_schema() -> Value {
    let mut node = object(NODE_FIELDS, &["id", "type"], node_field);
    let per_type: Vec<Value> = nodes::REGISTRY
        .iter()
        .map(|spec| {
            json!({
                "if": {"properties": {"type": {"const": spec.name}}, "required": ["type"]},
                "then": {"properties": {"params": {"$ref": format!("#/definitions/params-{}", spec.name)}}},
            })
        })
        .collect();
    if let Value::Object(m) = &mut node {
        m.insert("allOf".into(), Value::Array(per_type));
    }
    node
}

fn edge_field(name: &str) -> Value {
    match name {
        "from" | "to" => json!({"type": "string"}),
        "action" => json!({"enum": ["default", "error"]}),
        _ => unknown(name),
    }
}

fn input_field(name: &str) -> Value {
    match name {
        "type" => json!({"enum": InputType::NAMES}),
        "required" | "stdin" | "secret" => json!({"type": "boolean"}),
        "default" => json!({}),
        "description" => json!({"type": "string"}),
        _ => unknown(name),
    }
}

fn output_field(name: &str) -> Value {
    match name {
        "source" | "description" | "type" => json!({"type": "string"}),
        _ => unknown(name),
    }
}

fn batch_field(name: &str) -> Value {
    match name {
        "items" => json!({"anyOf": [{"type": "array"}, {"$ref": "#/definitions/template"}]}),
        "as" => json!({"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}),
        "parallel" => json!({"type": "boolean"}),
        "max_concurrent" => json!({"type": "integer", "minimum": 1, "maximum": 100}),
        "error_handling" => json!({"enum": ["fail_fast", "continue"]}),
        "max_retries" => json!({"type": "integer", "minimum": 1, "maximum": 10}),
        "retry_wait" => json!({"type": "number", "minimum": 0}),
        _ => unknown(name),
    }
}

/// A field the schema has no shape for: anything goes, and a test makes sure there is
/// none.
fn unknown(name: &str) -> Value {
    json!({"description": format!("UNDESCRIBED:{name}")})
}

/// One node type's params. Unknown params are only a warning in `pflow validate`, so
/// they are allowed here too.
fn params_schema(spec: &NodeSpec) -> Value {
    let properties: Map<String, Value> = spec
        .params
        .iter()
        .map(|p| (p.name.to_string(), param_schema(p)))
        .collect();
    let required: Vec<&str> = spec
        .params
        .iter()
        .filter(|p| p.required)
        .map(|p| p.name)
        .collect();
    json!({
        "type": "object",
        "description": spec.summary,
        "required": required,
        "properties": properties,
    })
}

/// A param: its kind, or a template (or text the node reads as that kind: "30", "yes").
fn param_schema(p: &ParamSpec) -> Value {
    let mut s = match p.kind {
        ParamKind::String => json!({"type": "string"}),
        ParamKind::Number => json!({"type": ["number", "string"]}),
        ParamKind::Integer => json!({"type": ["integer", "string"]}),
        ParamKind::Bool => json!({"type": ["boolean", "string"]}),
        ParamKind::Object => json!({"type": ["object", "string"]}),
        ParamKind::Array => json!({"type": ["array", "string"]}),
        ParamKind::StringMap => json!({
            "anyOf": [
                {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
                {"$ref": "#/definitions/template"}
            ]
        }),
        ParamKind::Any => json!({}),
    };
    if let Value::Object(m) = &mut s {
        if let (Some((lo, hi)), ParamKind::Number | ParamKind::Integer) = (p.range, p.kind) {
            m.insert("minimum".into(), json!(lo));
            m.insert("maximum".into(), json!(hi));
        }
        if !p.doc.is_empty() {
            m.insert("description".into(), json!(p.doc));
        }
    }
    s
}

/// What a path below an output of this kind may do, in words.
pub fn output_kind_text(kind: OutputKind) -> &'static str {
    match kind {
        OutputKind::Text => "text (walked into as JSON)",
        OutputKind::Json => "JSON",
        OutputKind::Scalar => "number or boolean",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_the_decoder_knows_has_a_shape() {
        let text = workflow_schema().to_string();
        assert!(!text.contains("UNDESCRIBED:"), "{text}");
    }

    #[test]
    fn every_param_and_output_is_described() {
        for spec in nodes::REGISTRY {
            assert!(!spec.summary.is_empty(), "{}", spec.name);
            for p in spec.params {
                assert!(!p.doc.is_empty(), "{}.{}", spec.name, p.name);
            }
            for o in spec.outputs {
                assert!(!o.doc.is_empty(), "{} output {}", spec.name, o.name);
            }
        }
    }
}
