//! SCIM wire format: what the client reads (users, list pages, errors, the service
//! provider config) and what it writes (user bodies, PATCH operations).

mod read;
mod write;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::destination::DestinationMember;
use crate::member::target::TargetPath;
use crate::member::{Attr, Change, Member};

pub(crate) const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub(crate) const ENTERPRISE_SCHEMA: &str =
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub(crate) const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub(crate) const BULK_REQUEST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
pub(crate) const WORK_EMAIL_VALUE_PATH: &str = "emails[type eq \"work\"].value";

pub(crate) use read::*;
pub(crate) use write::*;

#[cfg(test)]
mod tests {
    use super::*;

    fn full_member() -> Member {
        Member {
            employee_id: "E1".into(),
            email: "ada@example.com".into(),
            first_name: Some("Ada".into()),
            last_name: Some("Lovelace".into()),
            display_name: Some("Ada L".into()),
            job_title: Some("Engineer".into()),
            department: Some("R&D".into()),
            employee_number: Some("42".into()),
            manager: Some("mgr-id".into()),
            extra: Vec::new(),
            active: true,
        }
    }

    #[test]
    fn create_body_carries_every_mapped_attribute() {
        let body = create_body(&full_member());
        assert_eq!(body["schemas"], json!([USER_SCHEMA, ENTERPRISE_SCHEMA]));
        assert_eq!(body["userName"], "ada@example.com");
        assert_eq!(body["emails"][0]["type"], "work");
        assert_eq!(body["emails"][0]["primary"], true);
        assert_eq!(body["name"]["givenName"], "Ada");
        assert_eq!(body[ENTERPRISE_SCHEMA]["manager"]["value"], "mgr-id");
        assert_eq!(body["active"], true);
    }

    #[test]
    fn create_body_without_enterprise_attributes_names_only_the_core_schema() {
        let member = Member {
            employee_id: "E2".into(),
            email: "b@example.com".into(),
            active: true,
            ..Member::default()
        };
        let body = create_body(&member);
        assert_eq!(body["schemas"], json!([USER_SCHEMA]));
        assert!(body.get(ENTERPRISE_SCHEMA).is_none());
        assert!(body.get("name").is_none());
    }

    #[test]
    fn parses_a_user_with_defaults() {
        let user: WireUser = serde_json::from_value(json!({
            "id": "1", "userName": "x@example.com",
            "emails": [{"value": "y@example.com", "type": "home"}],
            "meta": {"version": "W/\"3\""},
            (ENTERPRISE_SCHEMA): {"manager": "m"},
        }))
        .unwrap();
        let d = user.into_destination(None);
        assert_eq!(d.member.employee_id, "");
        assert_eq!(d.member.email, "x@example.com");
        assert!(d.member.active, "absent active means active");
        assert!(!d.has_work_email);
        assert_eq!(d.version.as_deref(), Some("W/\"3\""));
        assert_eq!(d.member.manager.as_deref(), Some("m"));
    }

    #[test]
    fn patch_sets_both_user_name_and_work_email() {
        let body = patch_body(&[Change::Set(Attr::Email, "n@example.com".into())], true);
        let ops = body["Operations"].as_array().unwrap();
        assert_eq!(ops[0]["path"], "userName");
        assert_eq!(ops[1]["path"], WORK_EMAIL_VALUE_PATH);
        let body = patch_body(&[Change::Set(Attr::Email, "n@example.com".into())], false);
        assert_eq!(body["Operations"][1]["op"], "add");
        assert_eq!(body["Operations"][1]["value"][0]["type"], "work");
    }

    #[test]
    fn put_changes_keep_unmanaged_attributes() {
        let mut user = json!({
            "schemas": [USER_SCHEMA], "id": "1", "userName": "a@example.com",
            "nickName": "keep", "meta": {"version": "W/\"1\""},
            "emails": [{"value": "h@example.com", "type": "home", "primary": true}],
            "name": {"givenName": "A"},
        });
        apply_changes_to_resource(
            &mut user,
            &[
                Change::Set(Attr::Email, "b@example.com".into()),
                Change::Clear(Attr::FirstName),
                Change::Set(Attr::Department, "Ops".into()),
                Change::Active(false),
            ],
        );
        assert_eq!(user["nickName"], "keep");
        assert!(user.get("meta").is_none());
        assert!(user.get("name").is_none());
        assert_eq!(user["userName"], "b@example.com");
        assert_eq!(user["emails"][0]["primary"], false);
        assert_eq!(user["emails"][1]["value"], "b@example.com");
        assert_eq!(user[ENTERPRISE_SCHEMA]["department"], "Ops");
        assert_eq!(user["schemas"], json!([USER_SCHEMA, ENTERPRISE_SCHEMA]));
        assert_eq!(user["active"], false);
    }

    #[test]
    fn a_typeless_email_entry_is_matched_by_primary_or_value() {
        let user = |emails: Value| -> WireUser {
            serde_json::from_value(
                json!({"id": "1", "userName": "a@example.com", "emails": emails}),
            )
            .unwrap()
        };
        let by_primary = user(json!([{"value": "x@example.com", "primary": true}]));
        assert!(by_primary.into_destination(None).has_work_email);
        let by_value = user(json!([{"value": "A@example.com"}]));
        assert!(by_value.into_destination(None).has_work_email);
        let other = user(json!([{"value": "h@example.com", "type": "home", "primary": true}]));
        assert!(!other.into_destination(None).has_work_email);

        // PUT replaces that entry instead of adding a second one.
        let mut resource = json!({
            "userName": "a@example.com",
            "emails": [{"value": "a@example.com"}, {"value": "h@example.com", "type": "home"}],
        });
        apply_changes_to_resource(
            &mut resource,
            &[Change::Set(Attr::Email, "b@example.com".into())],
        );
        assert_eq!(
            resource["emails"],
            json!([{"value": "b@example.com"}, {"value": "h@example.com", "type": "home"}])
        );
    }

    #[test]
    fn whole_attribute_patch_replaces_name_and_emails() {
        let desired = Member {
            last_name: Some("Byron".into()),
            ..full_member()
        };
        let managed: crate::member::AttrSet = Attr::ALL.into_iter().collect();
        let changes = [
            Change::Set(Attr::LastName, "Byron".into()),
            Change::Set(Attr::Email, "n@example.com".into()),
        ];
        let body = patch_body_as(
            PatchForm::WholeAttributes,
            &changes,
            true,
            &desired,
            managed,
            true,
        )
        .unwrap();
        let ops = body["Operations"].as_array().unwrap();
        assert_eq!(
            ops[0],
            json!({"op": "replace", "path": "name", "value": {"givenName": "Ada", "familyName": "Byron"}})
        );
        assert_eq!(ops[2]["path"], "emails");
        assert_eq!(ops[2]["value"][0]["value"], "n@example.com");
        // Without both names in the mapping the object would wipe one: PUT instead.
        let only_last: crate::member::AttrSet = [Attr::Email, Attr::LastName].into_iter().collect();
        assert!(patch_body_as(
            PatchForm::WholeAttributes,
            &changes,
            true,
            &desired,
            only_last,
            true
        )
        .is_none());
        // A service without `emails` gets the userName alone.
        let body = patch_body_as(
            PatchForm::ValuePaths,
            &changes,
            true,
            &desired,
            managed,
            false,
        )
        .unwrap();
        assert!(body["Operations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|op| op["path"] != WORK_EMAIL_VALUE_PATH));
    }

    #[test]
    fn mapped_targets_in_create_patch_put_and_read_back() {
        let cost = Attr::Extra(crate::member::target::intern(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter",
        ));
        let city = Attr::Extra(crate::member::target::intern(
            "addresses[type eq \"work\"].locality",
        ));
        let mut member = full_member();
        member.set(cost, Some("CC-1".into()));
        member.set(city, Some("Oslo".into()));
        let body = create_body(&member);
        assert_eq!(body[ENTERPRISE_SCHEMA]["costCenter"], "CC-1");
        assert_eq!(body[ENTERPRISE_SCHEMA]["department"], "R&D");
        assert_eq!(
            body["addresses"],
            json!([{"type": "work", "locality": "Oslo"}])
        );

        let patch = patch_body(
            &[Change::Set(city, "Bergen".into()), Change::Clear(cost)],
            true,
        );
        assert_eq!(
            patch["Operations"],
            json!([
                {"op": "replace", "path": "addresses[type eq \"work\"].locality", "value": "Bergen"},
                {"op": "remove", "path": format!("{ENTERPRISE_SCHEMA}:costCenter")},
            ])
        );
        // Whole attributes cannot replace one entry of a list: PUT instead.
        let managed: crate::member::AttrSet = [Attr::Email, city].into_iter().collect();
        assert!(patch_body_as(
            PatchForm::WholeAttributes,
            &[Change::Set(city, "Bergen".into())],
            true,
            &member,
            managed,
            true
        )
        .is_none());

        let mut resource = body.clone();
        apply_changes_to_resource(
            &mut resource,
            &[Change::Set(city, "Bergen".into()), Change::Clear(cost)],
        );
        assert_eq!(resource["addresses"][0]["locality"], "Bergen");
        assert!(resource[ENTERPRISE_SCHEMA].get("costCenter").is_none());

        resource["id"] = json!("1");
        let user: WireUser = serde_json::from_value(resource).unwrap();
        let read = user.into_destination_with(None, &[city.field_name(), cost.field_name()]);
        assert_eq!(read.member.get(city), Some("Bergen"));
        assert_eq!(read.member.get(cost), None);
        assert_eq!(read.member.department.as_deref(), Some("R&D"));
    }

    #[test]
    fn lenient_total_results() {
        let total = |v: &str| {
            serde_json::from_str::<ListPage>(&format!(
                r#"{{"totalResults": {v}, "Resources": []}}"#
            ))
            .unwrap()
            .total_results
        };
        assert_eq!(total("12"), Some(12));
        assert_eq!(total("1e12"), Some(1_000_000_000_000));
        assert_eq!(total("1e40"), Some(u64::MAX));
        assert_eq!(total("-3"), None);
        assert_eq!(total("\"7\""), Some(7));
        assert_eq!(total("null"), None);
    }

    #[test]
    fn bulk_status_and_location() {
        let op: BulkResponseOp = serde_json::from_value(json!({
            "status": "201", "location": "https://h/v2/Users/abc"
        }))
        .unwrap();
        assert_eq!(op.status_code(), Some(201));
        assert_eq!(op.resource_id().as_deref(), Some("abc"));
    }
}
