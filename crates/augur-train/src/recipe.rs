//! `[data] recipe = "NAME"`: a known dataset's prompt template, answer field and verifier
//! ([`augur_data::recipe`]) written into the config where the config leaves them out, before
//! it is checked, so the run's saved `config.toml` holds exactly what was used.

/// Fills `data.template`, `reward.task` and `reward.answer_field` of `table` from the recipe
/// its `data.recipe` names (if any), keeping every key the table already sets. The error says
/// which recipes exist.
pub(crate) fn fill_from_recipe(table: &mut toml::Table) -> Result<(), String> {
    let Some(name) = table
        .get("data")
        .and_then(|d| d.get("recipe"))
        .and_then(toml::Value::as_str)
    else {
        return Ok(());
    };
    let recipe = augur_data::recipe(name)?;
    let mut set = |section: &str, key: &str, value: &str| {
        let entry = table
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let Some(t) = entry.as_table_mut() {
            t.entry(key)
                .or_insert_with(|| toml::Value::String(value.into()));
        }
    };
    set("data", "template", recipe.template);
    set("reward", "task", recipe.task);
    if let Some(field) = recipe.answer_field {
        set("reward", "answer_field", field);
    }
    Ok(())
}
