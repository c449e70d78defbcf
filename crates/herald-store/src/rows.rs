//! Rows as the SQL backends store them, read back into domain types.
//!
//! Every column is TEXT or BIGINT so the Any driver decodes the same way on
//! SQLite and PostgreSQL; a row that no longer parses is reported as corrupt
//! rather than silently skipped.

use herald_core::StoreError;
use herald_core::model::{Account, AppId, Delivery, Device, Message, NewDevice};
use sqlx::any::AnyRow;
use sqlx::{FromRow, Row};

type JsonObject = serde_json::Map<String, serde_json::Value>;

fn corrupt(what: &str, e: impl std::fmt::Display) -> sqlx::Error {
    sqlx::Error::Decode(format!("{what}: {e}").into())
}

fn parse<T: std::str::FromStr>(row: &AnyRow, column: &str) -> Result<T, sqlx::Error>
where
    T::Err: std::fmt::Display,
{
    row.try_get::<String, _>(column)?
        .parse()
        .map_err(|e| corrupt(column, e))
}

fn json<T: serde::de::DeserializeOwned>(row: &AnyRow, column: &str) -> Result<T, sqlx::Error> {
    serde_json::from_str(&row.try_get::<String, _>(column)?).map_err(|e| corrupt(column, e))
}

fn account(row: &AnyRow) -> Result<Account, sqlx::Error> {
    Account::parse(&row.try_get::<String, _>("account")?).map_err(|e| corrupt("account", e))
}

fn app_id(row: &AnyRow) -> Result<AppId, sqlx::Error> {
    AppId::parse(&row.try_get::<String, _>("app_id")?).map_err(|e| corrupt("app_id", e))
}

pub struct DeviceRow(pub Device);

impl FromRow<'_, AnyRow> for DeviceRow {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(DeviceRow(Device {
            id: row.try_get("id")?,
            registration: NewDevice {
                account: account(row)?,
                app_id: app_id(row)?,
                platform: parse(row, "platform")?,
                transport: parse(row, "transport")?,
                token: row.try_get("token")?,
                options: json::<JsonObject>(row, "options")?,
            },
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        }))
    }
}

pub struct DeliveryRow(pub Delivery);

impl FromRow<'_, AnyRow> for DeliveryRow {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        let attempts: i64 = row.try_get("attempts")?;
        Ok(DeliveryRow(Delivery {
            id: row.try_get("id")?,
            device_id: row.try_get("device_id")?,
            account: account(row)?,
            app_id: app_id(row)?,
            platform: parse(row, "platform")?,
            transport: parse(row, "transport")?,
            token: row.try_get("token")?,
            options: json::<JsonObject>(row, "options")?,
            message: json::<Message>(row, "message")?,
            created_at: row.try_get("created_at")?,
            attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        }))
    }
}

/// Serialises a JSON value for a TEXT column; these types cannot fail to serialise.
pub fn to_json(value: &impl serde::Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Backend(format!("serialising: {e}")))
}
