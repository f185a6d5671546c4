//! Reservation and group edits on the config text, with `toml_edit` so that the operator's
//! comments and layout survive. Each function returns the new text; the caller validates the
//! whole of it before anything is applied or written.

use axum::http::StatusCode;
use serde_json::{Map, Value};
use toml_edit::{ArrayOfTables, DocumentMut, InlineTable, Item, Table, TableLike};

use super::error::ApiError;
use super::model::{Group, Reservation, normal_id};

/// The engine's part of the running config as plain TOML values.
fn table(text: &str) -> Result<toml::Table, String> {
    toml::from_str(text).map_err(|e| format!("the running config does not parse: {e}"))
}

/// Every reservation, with its subnet's id as `subnet`, as written in the config.
pub(crate) fn reservations(text: &str) -> Result<Vec<Reservation>, String> {
    let table = table(text)?;
    let mut out = Vec::new();
    let subnets = table.get("subnets").and_then(toml::Value::as_array).cloned().unwrap_or_default();
    for subnet in subnets {
        let id = subnet.get("id").cloned();
        let list = subnet.get("reservations").and_then(toml::Value::as_array).cloned().unwrap_or_default();
        for r in list {
            let mut reservation: Reservation = r.try_into().map_err(|e: toml::de::Error| e.to_string())?;
            reservation.subnet = id.as_ref().and_then(toml::Value::as_integer);
            out.push(reservation);
        }
    }
    Ok(out)
}

/// Every group, with its name as `name`.
pub(crate) fn groups(text: &str) -> Result<Vec<Group>, String> {
    let table = table(text)?;
    let mut out = Vec::new();
    if let Some(groups) = table.get("groups").and_then(toml::Value::as_table) {
        for (name, group) in groups {
            let mut group: Group = group.clone().try_into().map_err(|e: toml::de::Error| e.to_string())?;
            group.name = Some(name.clone());
            out.push(group);
        }
    }
    Ok(out)
}

fn document(text: &str) -> Result<DocumentMut, ApiError> {
    text.parse::<DocumentMut>().map_err(|e| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("the running config does not parse: {e}"))
    })
}

/// A JSON value as a TOML value; `null` has none.
fn to_toml(field: &str, value: &Value) -> Result<toml_edit::Value, ApiError> {
    Ok(match value {
        Value::Null => return Err(ApiError::bad(field, "null is not a value here; leave the field out")),
        Value::Bool(b) => (*b).into(),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.into(),
            (None, Some(f)) => f.into(),
            _ => return Err(ApiError::bad(field, format!("{n} is out of range"))),
        },
        Value::String(s) => s.as_str().into(),
        Value::Array(items) => {
            let mut array = toml_edit::Array::new();
            for item in items {
                array.push(to_toml(field, item)?);
            }
            toml_edit::Value::Array(array)
        }
        Value::Object(map) => {
            let mut inline = InlineTable::new();
            for (k, v) in map {
                inline.insert(k, to_toml(&format!("{field}.{k}"), v)?);
            }
            toml_edit::Value::InlineTable(inline)
        }
    })
}

/// The fields of a body as a TOML table, refusing keys not in `allowed` (and leaving `skip`).
fn fields_table(fields: &Map<String, Value>, allowed: &[&str], skip: &[&str]) -> Result<Table, ApiError> {
    let mut table = Table::new();
    for (key, value) in fields {
        if skip.contains(&key.as_str()) || value.is_null() {
            continue;
        }
        if !allowed.contains(&key.as_str()) {
            return Err(ApiError::bad(key.as_str(), format!("unknown field; known are {}", allowed.join(", "))));
        }
        table.insert(key, Item::Value(to_toml(key, value)?));
    }
    Ok(table)
}

/// The subnets of the config, whether written as `[[subnets]]` or as an inline array.
fn subnets_mut(doc: &mut DocumentMut) -> Vec<&mut dyn TableLike> {
    match doc.get_mut("subnets") {
        Some(Item::ArrayOfTables(tables)) => tables.iter_mut().map(|t| t as &mut dyn TableLike).collect(),
        Some(Item::Value(toml_edit::Value::Array(array))) => {
            array.iter_mut().filter_map(|v| v.as_inline_table_mut().map(|t| t as &mut dyn TableLike)).collect()
        }
        _ => Vec::new(),
    }
}

/// Whether a reservation table is the one `id` names (its MAC or client identifier).
fn names(reservation: &dyn TableLike, id: &str) -> bool {
    let id = normal_id(id);
    ["hw-address", "client-id"]
        .iter()
        .any(|key| reservation.get(key).and_then(|v| v.as_str()).is_some_and(|v| normal_id(v) == id))
}

/// Removes the reservation `id` names; returns its subnet's id, or `None` when there is none.
fn remove_reservation(doc: &mut DocumentMut, id: &str) -> Option<i64> {
    for subnet in subnets_mut(doc) {
        let subnet_id = subnet.get("id").and_then(|v| v.as_integer());
        match subnet.get_mut("reservations") {
            Some(Item::ArrayOfTables(list)) => {
                let found = list.iter().position(|r| names(r, id));
                if let Some(i) = found {
                    list.remove(i);
                    return subnet_id;
                }
            }
            Some(Item::Value(toml_edit::Value::Array(list))) => {
                let found = list.iter().position(|r| r.as_inline_table().is_some_and(|t| names(t, id)));
                if let Some(i) = found {
                    list.remove(i);
                    return subnet_id;
                }
            }
            _ => {}
        }
    }
    None
}

/// Appends `reservation` to the subnet with `subnet_id`.
fn push_reservation(doc: &mut DocumentMut, subnet_id: i64, reservation: Table) -> Result<(), ApiError> {
    let tables = matches!(doc.get("subnets"), Some(Item::ArrayOfTables(_)));
    let Some(subnet) =
        subnets_mut(doc).into_iter().find(|s| s.get("id").and_then(|v| v.as_integer()) == Some(subnet_id))
    else {
        return Err(ApiError::bad("subnet", format!("no subnet with id {subnet_id}")));
    };
    if subnet.get("reservations").is_none() {
        // A subnet written as a table gets [[subnets.reservations]] tables; an inline one an
        // inline array.
        let empty = if tables {
            Item::ArrayOfTables(ArrayOfTables::new())
        } else {
            Item::Value(toml_edit::Value::Array(toml_edit::Array::new()))
        };
        subnet.insert("reservations", empty);
    }
    match subnet.get_mut("reservations") {
        Some(Item::ArrayOfTables(list)) => {
            list.push(reservation);
            Ok(())
        }
        Some(Item::Value(toml_edit::Value::Array(list))) => {
            list.push(reservation.into_inline_table());
            Ok(())
        }
        _ => Err(ApiError::bad("subnet", format!("subnet {subnet_id}'s reservations are not a list"))),
    }
}

/// Whether any reservation already has the MAC or client identifier of `fields`.
fn existing(doc: &mut DocumentMut, fields: &Map<String, Value>) -> Option<String> {
    let ids: Vec<&str> =
        ["hw-address", "client-id"].iter().filter_map(|k| fields.get(*k).and_then(Value::as_str)).collect();
    for subnet in subnets_mut(doc) {
        let found = match subnet.get("reservations") {
            Some(Item::ArrayOfTables(list)) => list.iter().any(|r| ids.iter().any(|id| names(r, id))),
            Some(Item::Value(toml_edit::Value::Array(list))) => {
                list.iter().filter_map(|r| r.as_inline_table()).any(|r| ids.iter().any(|id| names(r, id)))
            }
            _ => false,
        };
        if found {
            return ids.first().map(|id| (*id).to_owned());
        }
    }
    None
}

fn subnet_of(fields: &Map<String, Value>, default: Option<i64>) -> Result<i64, ApiError> {
    match fields.get("subnet") {
        Some(v) => v.as_i64().ok_or_else(|| ApiError::bad("subnet", "must be a subnet id (a number)")),
        None => default.ok_or_else(|| ApiError::bad("subnet", "required: the id of the reservation's subnet")),
    }
}

fn reservation_table(fields: &Map<String, Value>) -> Result<Table, ApiError> {
    let table = fields_table(fields, &Reservation::CONFIG_KEYS, &["subnet"])?;
    if !["hw-address", "client-id", "circuit-id"].iter().any(|k| table.contains_key(k)) {
        return Err(ApiError::bad("hw-address", "a reservation needs hw-address, client-id or circuit-id"));
    }
    Ok(table)
}

/// Adds a reservation; 409 when one exists for the same client.
pub(crate) fn add_reservation(text: &str, fields: &Map<String, Value>) -> Result<String, ApiError> {
    let mut doc = document(text)?;
    let subnet = subnet_of(fields, None)?;
    let table = reservation_table(fields)?;
    if let Some(id) = existing(&mut doc, fields) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("a reservation for {id} exists; PUT /api/v1/reservations/{id} changes it"),
        ));
    }
    push_reservation(&mut doc, subnet, table)?;
    Ok(doc.to_string())
}

/// Replaces the reservation `id` names (in its subnet, unless the body names another).
pub(crate) fn replace_reservation(text: &str, id: &str, fields: &Map<String, Value>) -> Result<String, ApiError> {
    let mut doc = document(text)?;
    let table = reservation_table(fields)?;
    let Some(old_subnet) = remove_reservation(&mut doc, id) else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no reservation for {id}")));
    };
    let subnet = subnet_of(fields, Some(old_subnet))?;
    push_reservation(&mut doc, subnet, table)?;
    Ok(doc.to_string())
}

/// Deletes the reservation `id` names.
pub(crate) fn delete_reservation(text: &str, id: &str) -> Result<String, ApiError> {
    let mut doc = document(text)?;
    if remove_reservation(&mut doc, id).is_none() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no reservation for {id}")));
    }
    Ok(doc.to_string())
}

fn check_group_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok { Ok(()) } else { Err(ApiError::bad("name", format!("{name:?}: 1 to 64 letters, digits, '-' or '_'"))) }
}

/// Adds or replaces group `name`.
pub(crate) fn set_group(text: &str, name: &str, fields: &Map<String, Value>) -> Result<String, ApiError> {
    check_group_name(name)?;
    let mut doc = document(text)?;
    let group = fields_table(fields, &Group::CONFIG_KEYS, &["name"])?;
    if doc.get("groups").is_none() {
        let mut groups = Table::new();
        groups.set_implicit(true);
        doc.insert("groups", Item::Table(groups));
    }
    let Some(groups) = doc.get_mut("groups").and_then(Item::as_table_like_mut) else {
        return Err(ApiError::bad("name", "the config's groups are not a table"));
    };
    groups.insert(name, Item::Table(group));
    Ok(doc.to_string())
}

/// Deletes group `name`.
pub(crate) fn delete_group(text: &str, name: &str) -> Result<String, ApiError> {
    let mut doc = document(text)?;
    let removed = doc.get_mut("groups").and_then(Item::as_table_like_mut).and_then(|g| g.remove(name));
    if removed.is_none() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no group named {name:?}")));
    }
    Ok(doc.to_string())
}

/// Adds or replaces a reservation for each row (a bulk import), each by its MAC or client
/// identifier, in one edit: the new text, or the first row that cannot be written (its index
/// and why). The caller validates the whole text before anything is applied.
pub(crate) fn upsert_reservations(text: &str, rows: &[Map<String, Value>]) -> Result<String, (usize, ApiError)> {
    let mut doc = document(text).map_err(|e| (0, e))?;
    for (i, fields) in rows.iter().enumerate() {
        let table = reservation_table(fields).map_err(|e| (i, e))?;
        let id = ["hw-address", "client-id", "circuit-id"].iter().find_map(|k| fields.get(*k).and_then(Value::as_str));
        let old = id.and_then(|id| remove_reservation(&mut doc, id));
        let subnet = subnet_of(fields, old).map_err(|e| (i, e))?;
        push_reservation(&mut doc, subnet, table).map_err(|e| (i, e))?;
    }
    Ok(doc.to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const CONFIG: &str = "# the lab\nlease-time = 600\n\n[[subnets]]\nid = 1 # office\nsubnet = \"10.0.0.0/24\"\n\
                          pools = [\"10.0.0.100-10.0.0.200\"]\n";

    fn fields(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("object")
    }

    #[test]
    fn adds_replaces_and_deletes_reservations_keeping_comments() {
        let added = add_reservation(
            CONFIG,
            &fields(json!({"subnet": 1, "hw-address": "02:00:00:00:00:0A", "ip-address": "10.0.0.5"})),
        )
        .expect("add");
        assert!(added.contains("# office") && added.contains("# the lab"), "{added}");
        assert!(added.contains("[[subnets.reservations]]"), "{added}");
        let listed = reservations(&added).expect("list");
        assert_eq!(listed[0].ip_address.as_deref(), Some("10.0.0.5"));
        assert_eq!(listed[0].subnet, Some(1));

        let again = add_reservation(&added, &fields(json!({"subnet": 1, "hw-address": "02-00-00-00-00-0a"})));
        assert_eq!(again.expect_err("duplicate").status, StatusCode::CONFLICT);

        let replaced = replace_reservation(
            &added,
            "02:00:00:00:00:0a",
            &fields(json!({"hw-address": "02:00:00:00:00:0a", "ip-address": "10.0.0.6"})),
        )
        .expect("replace");
        assert_eq!(reservations(&replaced).expect("list")[0].ip_address.as_deref(), Some("10.0.0.6"));
        let deleted = delete_reservation(&replaced, "02:00:00:00:00:0A").expect("delete");
        assert!(reservations(&deleted).expect("list").is_empty());
        assert_eq!(delete_reservation(&deleted, "02:00:00:00:00:0a").expect_err("gone").status, StatusCode::NOT_FOUND);
    }

    #[test]
    fn refuses_unknown_fields_and_missing_identity() {
        let err = add_reservation(CONFIG, &fields(json!({"subnet": 1, "mac": "x"}))).expect_err("unknown");
        assert_eq!(err.field.as_deref(), Some("mac"));
        let err = add_reservation(CONFIG, &fields(json!({"subnet": 1, "ip-address": "10.0.0.5"}))).expect_err("who");
        assert_eq!(err.field.as_deref(), Some("hw-address"));
        let err = add_reservation(CONFIG, &fields(json!({"subnet": 9, "hw-address": "02:00:00:00:00:01"})))
            .expect_err("subnet");
        assert_eq!(err.field.as_deref(), Some("subnet"));
    }

    #[test]
    fn sets_and_deletes_groups() {
        let text =
            set_group(CONFIG, "office", &fields(json!({"lease-time": 300, "options": {"routers": ["10.0.0.1"]}})))
                .expect("set");
        let listed = groups(&text).expect("groups");
        assert_eq!(listed[0].name.as_deref(), Some("office"));
        assert_eq!(listed[0].options.as_ref().expect("options")["routers"][0], "10.0.0.1");
        assert!(crate::ServerConfig::from_toml_str(&text).is_ok(), "{text}");
        let text = delete_group(&text, "office").expect("delete");
        assert!(groups(&text).expect("groups").is_empty());
        assert_eq!(check_group_name("a b").expect_err("space").field.as_deref(), Some("name"));
    }
}
