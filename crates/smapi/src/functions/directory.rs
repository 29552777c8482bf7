//! The user directory through DirMaint: listing and reading entries, creating, replacing, locking and deleting
//! them, and the keyword view (`Image_Definition_*_DM`).
//!
//! Directory statements are at most 72 characters. Entries read back hold the USER statement with its
//! password as set, so treat [`ImageQueryDm`]'s output as secret.

use super::{DataSecurityErase, DirectoryOperation, KeywordUpdate, decode, require_entries, smapi_function};
use crate::layout::{Field, Layout};
use crate::wire::Limits;

/// The longest directory statement.
pub const DIRECTORY_RECORD_BYTES: usize = 72;

/// `Image_Name_Query_DM`: every directory entry name (including `$ALLOC$` and the like, and in an SSI cluster
/// other members' entries). The target is ignored. 0/28 means no entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageNameQueryDm {
    pub target: String,
}

impl ImageNameQueryDm {
    pub fn new(target: impl Into<String>) -> Self {
        ImageNameQueryDm { target: target.into() }
    }
}

const NAME_ARRAY_LAYOUT: Layout = Layout { fields: &[Field::StringArray("image_names")], optional: true };

smapi_function!(ImageNameQueryDm, "Image_Name_Query_DM", Vec<String>,
    parameters(self, _writer) { Ok(()) },
    output(reply) { decode(&NAME_ARRAY_LAYOUT, reply)?.texts("image_names") }
);

/// `Image_Query_DM`: the target's whole directory entry as statements (72 characters each, blank padded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageQueryDm {
    pub target: String,
}

impl ImageQueryDm {
    pub fn new(target: impl Into<String>) -> Self {
        ImageQueryDm { target: target.into() }
    }
}

const RECORD_ARRAY_LAYOUT: Layout = Layout { fields: &[Field::StringArray("image_records")], optional: true };

smapi_function!(ImageQueryDm, "Image_Query_DM", Vec<String>,
    parameters(self, _writer) { Ok(()) },
    output(reply) { decode(&RECORD_ARRAY_LAYOUT, reply)?.texts("image_records") }
);

/// `Image_Definition_Query_DM`: the entry in keyword form, for the keywords asked (`*` for all, or names such
/// as `MDISK`, `STORAGE_INITIAL`). 8/3002 means an unknown keyword (named in the error's diagnostics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDefinitionQueryDm {
    pub target: String,
    pub keywords: Vec<String>,
}

impl ImageDefinitionQueryDm {
    pub fn new(target: impl Into<String>, keywords: Vec<String>) -> Self {
        ImageDefinitionQueryDm { target: target.into(), keywords }
    }
}

const DEFINITION_LAYOUT: Layout = Layout { fields: &[Field::NulList("directory_information")], optional: true };

smapi_function!(ImageDefinitionQueryDm, "Image_Definition_Query_DM", Vec<String>,
    parameters(self, writer) {
        require_entries("keywords", &self.keywords)?;
        writer.framed_list("keywords", &self.keywords)
    },
    output(reply) { decode(&DEFINITION_LAYOUT, reply)?.texts("directory_information") }
);

/// `Image_Definition_Update_DM`: changes the entry through keywords, for example `SHARE=RELATIVE=200`,
/// `STORAGE_INITIAL=1G` or `MDISK=OPERATION=ADD VDEV=999 ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDefinitionUpdateDm {
    pub target: String,
    pub keywords: Vec<String>,
}

impl ImageDefinitionUpdateDm {
    pub fn new(target: impl Into<String>, keywords: Vec<String>) -> Self {
        ImageDefinitionUpdateDm { target: target.into(), keywords }
    }
}

smapi_function!(ImageDefinitionUpdateDm, "Image_Definition_Update_DM", KeywordUpdate,
    parameters(self, writer) {
        require_entries("keywords", &self.keywords)?;
        writer.framed_list("keywords", &self.keywords)
    },
    output(reply) { KeywordUpdate::decode(reply) },
    keyword_asynchronous = true
);

/// `Image_Definition_Create_DM`: creates an entry from keywords (`PASSWORD=`, `STORAGE_INITIAL=`, `CPU=`...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDefinitionCreateDm {
    pub target: String,
    pub keywords: Vec<String>,
}

impl ImageDefinitionCreateDm {
    pub fn new(target: impl Into<String>, keywords: Vec<String>) -> Self {
        ImageDefinitionCreateDm { target: target.into(), keywords }
    }
}

smapi_function!(ImageDefinitionCreateDm, "Image_Definition_Create_DM", KeywordUpdate,
    parameters(self, writer) {
        require_entries("keywords", &self.keywords)?;
        writer.framed_list("keywords", &self.keywords)
    },
    output(reply) { KeywordUpdate::decode(reply) },
    keyword_asynchronous = true
);

/// `Image_Definition_Delete_DM`: removes statements named by keywords (`MDISK=VDEV=999`, `CPU=CPUADDR=01`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDefinitionDeleteDm {
    pub target: String,
    pub keywords: Vec<String>,
}

impl ImageDefinitionDeleteDm {
    pub fn new(target: impl Into<String>, keywords: Vec<String>) -> Self {
        ImageDefinitionDeleteDm { target: target.into(), keywords }
    }
}

smapi_function!(ImageDefinitionDeleteDm, "Image_Definition_Delete_DM", KeywordUpdate,
    parameters(self, writer) {
        require_entries("keywords", &self.keywords)?;
        writer.framed_list("keywords", &self.keywords)
    },
    output(reply) { KeywordUpdate::decode(reply) },
    keyword_asynchronous = true
);

/// `Image_Create_DM`: creates a directory entry, either from a prototype (with an initial password and
/// account) or from directory statements (then password and account must be empty, as zthin checks).
/// 400/8 means the name exists, 408/24 no disk space, 436/4 an included profile does not exist.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageCreateDm {
    pub target: String,
    pub prototype_name: String,
    pub initial_password: String,
    pub initial_account: String,
    pub records: Vec<String>,
}

impl ImageCreateDm {
    /// An entry made of the given directory statements.
    pub fn from_records(target: impl Into<String>, records: Vec<String>) -> Self {
        ImageCreateDm { target: target.into(), records, ..Default::default() }
    }

    /// An entry made from a prototype.
    pub fn from_prototype(
        target: impl Into<String>,
        prototype_name: impl Into<String>,
        initial_password: impl Into<String>,
        initial_account: impl Into<String>,
    ) -> Self {
        ImageCreateDm {
            target: target.into(),
            prototype_name: prototype_name.into(),
            initial_password: initial_password.into(),
            initial_account: initial_account.into(),
            records: Vec::new(),
        }
    }
}

smapi_function!(ImageCreateDm, "Image_Create_DM", DirectoryOperation,
    parameters(self, writer) {
        if !self.records.is_empty() && (!self.initial_password.is_empty() || !self.initial_account.is_empty()) {
            return Err(crate::EncodeError::Invalid {
                field: "records",
                reason: "an entry given as directory statements takes its password and account from them; \
                         leave initial_password and initial_account empty"
                    .into(),
            });
        }
        writer.string("prototype_name", &self.prototype_name, Limits::range(0, 8))?;
        writer.string("initial_password", &self.initial_password, Limits::range(0, 200))?;
        writer.string("initial_account", &self.initial_account, Limits::range(0, 8))?;
        writer.record_array("records", &self.records, DIRECTORY_RECORD_BYTES)
    },
    output(reply) { DirectoryOperation::decode(reply) }
);

/// `Image_Delete_DM`: deletes the target's directory entry (log the guest off first). 400/4 means there is no
/// such entry (Feilong treats it as deleted), 400/12 locked, 596/6831 still running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDeleteDm {
    pub target: String,
    pub data_security_erase: DataSecurityErase,
}

impl ImageDeleteDm {
    pub fn new(target: impl Into<String>, data_security_erase: DataSecurityErase) -> Self {
        ImageDeleteDm { target: target.into(), data_security_erase }
    }
}

smapi_function!(ImageDeleteDm, "Image_Delete_DM", DirectoryOperation,
    parameters(self, writer) {
        writer.int1(self.data_security_erase as u8);
        Ok(())
    },
    output(reply) { DirectoryOperation::decode(reply) }
);

/// `Image_Lock_DM`: locks the whole entry (empty device address) or one device of it, before a replace.
/// 400/12 means it is locked already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageLockDm {
    pub target: String,
    pub device_address: String,
}

impl ImageLockDm {
    pub fn new(target: impl Into<String>, device_address: impl Into<String>) -> Self {
        ImageLockDm { target: target.into(), device_address: device_address.into() }
    }
}

smapi_function!(ImageLockDm, "Image_Lock_DM", (),
    parameters(self, writer) { writer.string("device_address", &self.device_address, Limits::range(0, 4)) },
    output(_reply) { Ok(()) }
);

/// `Image_Unlock_DM`: releases a lock taken by [`ImageLockDm`]. 400/24 means it was not locked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUnlockDm {
    pub target: String,
    pub device_address: String,
}

impl ImageUnlockDm {
    pub fn new(target: impl Into<String>, device_address: impl Into<String>) -> Self {
        ImageUnlockDm { target: target.into(), device_address: device_address.into() }
    }
}

smapi_function!(ImageUnlockDm, "Image_Unlock_DM", (),
    parameters(self, writer) { writer.string("device_address", &self.device_address, Limits::range(0, 4)) },
    output(_reply) { Ok(()) }
);

/// `Image_Replace_DM`: replaces the whole (locked) entry with the given statements; 400/24 if not locked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReplaceDm {
    pub target: String,
    pub records: Vec<String>,
}

impl ImageReplaceDm {
    pub fn new(target: impl Into<String>, records: Vec<String>) -> Self {
        ImageReplaceDm { target: target.into(), records }
    }
}

smapi_function!(ImageReplaceDm, "Image_Replace_DM", (),
    parameters(self, writer) {
        require_entries("records", &self.records)?;
        writer.record_array("records", &self.records, DIRECTORY_RECORD_BYTES)
    },
    output(_reply) { Ok(()) }
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{Credentials, encode_request};

    #[test]
    fn create_from_records_refuses_a_password() {
        let mut request = ImageCreateDm::from_records("linux01", vec!["USER LINUX01 PW 1G 2G G".into()]);
        request.initial_password = "secret".into();
        let error = encode_request(&request, &Credentials::none()).unwrap_err();
        assert!(error.to_string().contains("leave initial_password and initial_account empty"));
    }

    #[test]
    fn statements_longer_than_72_are_refused() {
        let request = ImageReplaceDm::new("linux01", vec!["X".repeat(73)]);
        let error = encode_request(&request, &Credentials::none()).unwrap_err();
        assert!(error.to_string().contains("record 0 is 73 bytes long"));
    }

    #[test]
    fn keyword_functions_need_a_keyword() {
        let request = ImageDefinitionUpdateDm::new("linux01", Vec::new());
        assert!(encode_request(&request, &Credentials::none()).is_err());
    }
}
