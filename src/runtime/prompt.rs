//! Rendering `{{variable}}` templates. Validation at deploy time guarantees
//! every variable used is defined, so rendering cannot fail.

use std::collections::HashMap;

use crate::config::AgentSpec;
use crate::messaging::Message;

pub fn variables(spec: &AgentSpec, message: &Message) -> HashMap<String, String> {
    let mut vars: HashMap<String, String> = spec
        .parameters
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())))
        .collect();
    vars.insert("request".into(), message.content.clone());
    vars.insert("context".into(), message.context.clone().unwrap_or_default());
    vars.insert("requirements".into(), message.requirements.clone().unwrap_or_default());
    vars.insert("agent_name".into(), spec.name.to_string());
    vars
}

pub fn render(template: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        match after.find("}}") {
            Some(close) => {
                let name = after[..close].trim();
                out.push_str(vars.get(name).map(String::as_str).unwrap_or(""));
                rest = &after[close + 2..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::render;
    use std::collections::HashMap;

    #[test]
    fn substitutes_and_trims_names() {
        let vars = HashMap::from([("request".to_owned(), "sum 2+2".to_owned()), ("n".to_owned(), "3".to_owned())]);
        assert_eq!(render("Do {{request}} {{ n }} times{{missing}}.", &vars), "Do sum 2+2 3 times.");
        assert_eq!(render("no vars", &vars), "no vars");
    }
}
