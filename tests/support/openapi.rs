//! Checks a request against Alpaca's OpenAPI documents (`tests/fixtures/openapi/`): the path and
//! method exist, every query parameter is declared for that operation and its value is one of the
//! declared enum values, and every field of a JSON body (and of each multi-leg order's legs) is a
//! declared property with an allowed value.

#![allow(dead_code)]

use serde_json::Value;

pub struct Specs {
    docs: Vec<Value>,
}

impl Specs {
    pub fn load() -> Specs {
        let docs = ["trading-api.json", "market-data-api.json"]
            .iter()
            .map(|f| {
                serde_json::from_str(&std::fs::read_to_string(format!("tests/fixtures/openapi/{f}")).unwrap()).unwrap()
            })
            .collect();
        Specs { docs }
    }

    pub fn check(&self, method: &str, path: &str, query: &[(String, String)], body: &str) -> Result<(), String> {
        let method = method.to_ascii_lowercase();
        for doc in &self.docs {
            let Some(paths) = doc["paths"].as_object() else { continue };
            for (template, item) in paths {
                if !path_matches(template, path) {
                    continue;
                }
                let Some(op) = item.get(&method) else { continue };
                return check_op(doc, item, op, query, body);
            }
        }
        Err("no such path and method in Alpaca's OpenAPI documents".into())
    }
}

fn path_matches(template: &str, path: &str) -> bool {
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    t.len() == p.len()
        && t.iter().zip(&p).all(|(t, p)| (t.starts_with('{') && t.ends_with('}') && !p.is_empty()) || t == p)
}

fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    let mut v = v;
    while let Some(r) = v.get("$ref").and_then(Value::as_str) {
        let mut target = doc;
        for part in r.trim_start_matches("#/").split('/') {
            target = &target[part];
        }
        v = target;
    }
    v
}

fn allowed(doc: &Value, schema: &Value, value: &str) -> Result<(), String> {
    let schema = resolve(doc, schema);
    if let Some(values) = schema.get("enum").and_then(Value::as_array)
        && !values.iter().any(|e| e.as_str() == Some(value))
    {
        return Err(format!("{value:?} is not one of {values:?}"));
    }
    if schema.get("type").and_then(Value::as_str) == Some("array")
        && let Some(items) = schema.get("items")
    {
        for part in value.split(',') {
            allowed(doc, items, part)?;
        }
    }
    Ok(())
}

fn check_op(doc: &Value, item: &Value, op: &Value, query: &[(String, String)], body: &str) -> Result<(), String> {
    let params: Vec<&Value> = item["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(op["parameters"].as_array().into_iter().flatten())
        .map(|p| resolve(doc, p))
        .collect();
    for (name, value) in query {
        let Some(p) = params.iter().find(|p| p["in"] == "query" && p["name"] == name.as_str()) else {
            return Err(format!("query parameter {name:?} is not declared"));
        };
        allowed(doc, &p["schema"], value).map_err(|e| format!("query {name}: {e}"))?;
    }
    if body.trim().is_empty() {
        return Ok(());
    }
    let schema = resolve(doc, &op["requestBody"]["content"]["application/json"]["schema"]);
    let body: Value = serde_json::from_str(body).map_err(|e| format!("body is not JSON: {e}"))?;
    check_object(doc, schema, &body, "body")
}

fn check_object(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let Some(props) = resolve(doc, schema)["properties"].as_object() else {
        return Err(format!("{at}: the spec declares no properties"));
    };
    let Some(fields) = value.as_object() else { return Err(format!("{at} is not an object")) };
    for (k, v) in fields {
        let Some(prop) = props.get(k) else { return Err(format!("{at}.{k} is not a declared field")) };
        let prop = resolve(doc, prop);
        match v {
            Value::String(s) => allowed(doc, prop, s).map_err(|e| format!("{at}.{k}: {e}"))?,
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if item.is_object() {
                        check_object(doc, &prop["items"], item, &format!("{at}.{k}[{i}]"))?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}
