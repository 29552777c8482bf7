//! Typed SMAPI functions: one request struct per function, which encodes its parameters in the documented
//! order, and a typed output decoded through the function's declarative [`Layout`].
//!
//! Names follow the SMAPI function names (`Image_Create_DM` is [`ImageCreateDm`]). Functions ending in `_DM`
//! go through the directory manager (DirMaint) and may answer "asynchronous operation started" (return code
//! 592); [`crate::SmapiClient::call`] then polls the operation until it ends.
//!
//! The keyword functions (`*_Extended`, `Image_Definition_*_DM`) take `key=value` pairs whose values are kept
//! as the caller spelled them: SMAPI reads them case-insensitively, and the recorded exchanges this crate is
//! tested against use lower case.

mod directory;
mod disk;
mod image;
mod network;
mod system;

pub use directory::*;
pub use disk::*;
pub use image::*;
pub use network::*;
pub use system::*;

use crate::error::{DecodeError, EncodeError};
use crate::layout::{self, Field, Layout, Record};
use crate::response::Reply;

/// Decodes a reply's output with a layout.
pub(crate) fn decode(layout: &Layout, reply: &Reply) -> Result<Record, DecodeError> {
    layout::decode(layout, &reply.output)
}

/// The output of the classic directory functions: the int4 id of the DirMaint operation they started (when
/// they answer 592 with reason code 0), or `FF FF FF FF` when they finished synchronously.
pub(crate) const OPERATION_ID_LAYOUT: Layout = Layout { fields: &[Field::Int4("operation_id")], optional: true };

/// The output of the keyword directory functions: NUL-terminated operation data on 592/4.
pub(crate) const KEYWORD_ASYNCHRONOUS_LAYOUT: Layout =
    Layout { fields: &[Field::NulList("asynch_data")], optional: true };

/// What a classic directory function returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectoryOperation {
    /// The DirMaint operation id; `None` when the server sent none or sent `FF FF FF FF` (the request completed
    /// synchronously).
    pub operation_id: Option<u32>,
}

impl DirectoryOperation {
    pub(crate) fn decode(reply: &Reply) -> Result<Self, DecodeError> {
        let mut record = decode(&OPERATION_ID_LAYOUT, reply)?;
        let operation_id = record.optional_int4("operation_id")?.filter(|&id| id != -1).map(|id| id as u32);
        Ok(DirectoryOperation { operation_id })
    }
}

/// What a keyword directory function returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeywordUpdate {
    /// The operation data of an asynchronous start (592/4); empty when the update completed.
    pub asynch_data: Vec<String>,
}

impl KeywordUpdate {
    pub(crate) fn decode(reply: &Reply) -> Result<Self, DecodeError> {
        let mut record = decode(&KEYWORD_ASYNCHRONOUS_LAYOUT, reply)?;
        Ok(KeywordUpdate { asynch_data: record.texts("asynch_data")? })
    }
}

/// Whether DirMaint overwrites freed disk space (`data_security_erase`, an int1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DataSecurityErase {
    /// Use the directory manager's default.
    #[default]
    Unspecified = 0,
    NoErase = 1,
    Erase = 2,
}

impl DataSecurityErase {
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(DataSecurityErase::Unspecified),
            1 => Some(DataSecurityErase::NoErase),
            2 => Some(DataSecurityErase::Erase),
            _ => None,
        }
    }
}

/// Refuses an empty list where the function needs at least one entry.
pub(crate) fn require_entries<T>(field: &'static str, entries: &[T]) -> Result<(), EncodeError> {
    if entries.is_empty() {
        return Err(EncodeError::Invalid { field, reason: "at least one entry is required".into() });
    }
    Ok(())
}

/// Refuses an empty value where the function needs one.
pub(crate) fn require_value(field: &'static str, value: &str) -> Result<(), EncodeError> {
    if value.is_empty() {
        return Err(EncodeError::Invalid { field, reason: "a value is required".into() });
    }
    Ok(())
}

/// Implements [`crate::SmapiRequest`] for a function whose parameters and output are described by the given
/// expressions; keeps each function's definition to what differs.
macro_rules! smapi_function {
    (
        $request:ty, $name:literal, $output:ty,
        parameters($self:ident, $writer:ident) $parameters:block,
        output($reply:ident) $decode:block
        $(, duration = $duration:expr)?
        $(, keyword_asynchronous = $keyword:expr)?
        $(, diagnostics($diagnostics_reply:ident) $diagnostics:block)?
    ) => {
        impl $crate::request::SmapiRequest for $request {
            const FUNCTION: &'static str = $name;
            $(const DURATION: $crate::request::CallDuration = $duration;)?
            $(const KEYWORD_ASYNCHRONOUS_DATA: bool = $keyword;)?
            type Output = $output;

            fn target(&self) -> &str {
                &self.target
            }

            fn write_parameters(
                &$self,
                $writer: &mut $crate::wire::ParameterWriter,
            ) -> Result<(), $crate::error::EncodeError> {
                $parameters
            }

            fn decode_output($reply: &$crate::response::Reply) -> Result<$output, $crate::error::DecodeError> {
                $decode
            }

            $(fn error_diagnostics($diagnostics_reply: &$crate::response::Reply) -> Vec<String> {
                $diagnostics
            })?
        }
    };
}
pub(crate) use smapi_function;
