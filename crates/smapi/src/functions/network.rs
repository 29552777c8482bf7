//! Virtual network adapters (NICs) and virtual switches.
//!
//! The `_Extended` functions take `key=value` pairs: the vswitch ones unframed after the target,
//! `Virtual_Network_Adapter_Create_Extended_DM` framed by a length. Pairs are sent in the order the SMAPI
//! reference lists them and an empty or absent value is left out.

use super::{KeywordUpdate, decode, require_value, smapi_function};
use crate::error::DecodeError;
use crate::layout::{Field, Layout, Record, Words};
use crate::wire::{KeywordPairs, Limits};

fn yes_no(value: bool) -> &'static str {
    if value { "YES" } else { "NO" }
}

/// `Virtual_Network_Adapter_Create_Extended_DM`: adds a NICDEF to the target's directory entry.
/// 404/4 means the device exists, 400/12 the entry is locked (Feilong retries).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VirtualNetworkAdapterCreateExtendedDm {
    pub target: String,
    /// The virtual device number of the adapter, for example `1000`.
    pub image_device_number: String,
    /// `QDIO` or `HIPERSOCKETS` (kept as spelled).
    pub adapter_type: String,
    /// Number of virtual devices (3 to 3072).
    pub devices: Option<u32>,
    pub channel_path_id: String,
    /// The last six hex digits of the MAC address.
    pub mac_id: String,
}

smapi_function!(VirtualNetworkAdapterCreateExtendedDm, "Virtual_Network_Adapter_Create_Extended_DM", KeywordUpdate,
    parameters(self, writer) {
        require_value("image_device_number", &self.image_device_number)?;
        let mut pairs = KeywordPairs::new();
        pairs
            .push("image_device_number", self.image_device_number.as_str())
            .push("adapter_type", self.adapter_type.as_str())
            .push_optional("devices", self.devices.as_ref())
            .push("channel_path_id", self.channel_path_id.as_str())
            .push("mac_id", self.mac_id.as_str());
        writer.framed_pairs("adapter keywords", &pairs)
    },
    output(reply) { KeywordUpdate::decode(reply) },
    keyword_asynchronous = true
);

/// `Virtual_Network_Adapter_Connect_Vswitch_DM`: couples the NICDEF to a virtual switch in the directory
/// (`NICDEF vdev LAN SYSTEM switch`; it cannot carry a VLAN). 404/8 means the device is not defined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualNetworkAdapterConnectVswitchDm {
    pub target: String,
    pub image_device_number: String,
    pub switch_name: String,
}

impl VirtualNetworkAdapterConnectVswitchDm {
    pub fn new(
        target: impl Into<String>,
        image_device_number: impl Into<String>,
        switch_name: impl Into<String>,
    ) -> Self {
        VirtualNetworkAdapterConnectVswitchDm {
            target: target.into(),
            image_device_number: image_device_number.into(),
            switch_name: switch_name.into(),
        }
    }
}

smapi_function!(VirtualNetworkAdapterConnectVswitchDm, "Virtual_Network_Adapter_Connect_Vswitch_DM", (),
    parameters(self, writer) {
        writer.string("image_device_number", &self.image_device_number, Limits::range(1, 4))?;
        writer.string("switch_name", &self.switch_name, Limits::range(1, 8))
    },
    output(_reply) { Ok(()) }
);

/// `Virtual_Network_Adapter_Connect_Vswitch`: couples a running guest's NIC to a virtual switch. 212/8 means
/// the guest is not authorized on the switch, 204/20 that it is connected already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualNetworkAdapterConnectVswitch {
    pub target: String,
    pub image_device_number: String,
    pub switch_name: String,
}

impl VirtualNetworkAdapterConnectVswitch {
    pub fn new(
        target: impl Into<String>,
        image_device_number: impl Into<String>,
        switch_name: impl Into<String>,
    ) -> Self {
        VirtualNetworkAdapterConnectVswitch {
            target: target.into(),
            image_device_number: image_device_number.into(),
            switch_name: switch_name.into(),
        }
    }
}

smapi_function!(VirtualNetworkAdapterConnectVswitch, "Virtual_Network_Adapter_Connect_Vswitch", (),
    parameters(self, writer) {
        writer.string("image_device_number", &self.image_device_number, Limits::range(1, 4))?;
        writer.string("switch_name", &self.switch_name, Limits::range(1, 8))
    },
    output(_reply) { Ok(()) }
);

/// `Virtual_Network_Adapter_Delete_DM`: removes a NICDEF from the directory entry. 404/8 means none exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualNetworkAdapterDeleteDm {
    pub target: String,
    pub image_device_number: String,
}

impl VirtualNetworkAdapterDeleteDm {
    pub fn new(target: impl Into<String>, image_device_number: impl Into<String>) -> Self {
        VirtualNetworkAdapterDeleteDm { target: target.into(), image_device_number: image_device_number.into() }
    }
}

smapi_function!(VirtualNetworkAdapterDeleteDm, "Virtual_Network_Adapter_Delete_DM", (),
    parameters(self, writer) { writer.string("image_device_number", &self.image_device_number, Limits::range(1, 4)) },
    output(_reply) { Ok(()) }
);

/// `Virtual_Network_Vswitch_Create_Extended`: defines a virtual switch (and with `persist`, in SYSTEM CONFIG
/// too). 212/36 means it exists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VirtualNetworkVswitchCreateExtended {
    pub target: String,
    pub switch_name: String,
    /// Up to three real OSA device addresses separated by blanks, or `NONE`.
    pub real_device_address: String,
    pub port_name: String,
    pub controller_name: String,
    /// `CONNECT` or `DISCON`.
    pub connection_value: String,
    /// 1 to 8 (megabytes).
    pub queue_memory_limit: Option<u8>,
    /// `NONROUTER` or `PRIROUTER`.
    pub routing_value: String,
    /// `ETHERNET` or `IP`.
    pub transport_type: String,
    /// `UNAWARE`, or the default VLAN id of a VLAN-aware switch.
    pub vlan_id: String,
    /// `ACCESS` or `TRUNK`.
    pub port_type: String,
    /// Whether the definition is also written to SYSTEM CONFIG.
    pub persist: Option<bool>,
    /// `GVRP` or `NOGVRP`.
    pub gvrp_value: String,
    pub native_vlanid: Option<u16>,
    /// `QDIO` or `IVL`.
    pub vswitch_type: String,
    /// Seconds.
    pub iptimeout: Option<u16>,
    /// `USERBASED` or `PORTBASED`.
    pub port_selection: String,
    pub group_name: String,
    pub vswitch_domain: String,
    /// `LOCAL` or `DOMAIN`.
    pub vswitch_global: String,
}

smapi_function!(VirtualNetworkVswitchCreateExtended, "Virtual_Network_Vswitch_Create_Extended", (),
    parameters(self, writer) {
        require_value("switch_name", &self.switch_name)?;
        let mut pairs = KeywordPairs::new();
        pairs
            .push("switch_name", self.switch_name.as_str())
            .push("real_device_address", self.real_device_address.as_str())
            .push("port_name", self.port_name.as_str())
            .push("controller_name", self.controller_name.as_str())
            .push("connection_value", self.connection_value.as_str())
            .push_optional("queue_memory_limit", self.queue_memory_limit.as_ref())
            .push("routing_value", self.routing_value.as_str())
            .push("transport_type", self.transport_type.as_str())
            .push("vlan_id", self.vlan_id.as_str())
            .push("port_type", self.port_type.as_str())
            .push_optional("persist", self.persist.map(yes_no).as_ref())
            .push("gvrp_value", self.gvrp_value.as_str())
            .push_optional("native_vlanid", self.native_vlanid.as_ref())
            .push("vswitch_type", self.vswitch_type.as_str())
            .push_optional("iptimeout", self.iptimeout.as_ref())
            .push("port_selection", self.port_selection.as_str())
            .push("group_name", self.group_name.as_str())
            .push("vswitch_domain", self.vswitch_domain.as_str())
            .push("vswitch_global", self.vswitch_global.as_str());
        writer.unframed_pairs("vswitch keywords", &pairs)
    },
    output(_reply) { Ok(()) }
);

/// Generates the settings struct of `Virtual_Network_Vswitch_Set_Extended` and its encoding, keeping the
/// field list and the documented pair order (with `persist` between the two groups) in one place.
macro_rules! vswitch_settings {
    (
        before_persist { $($(#[$before_doc:meta])* $before:ident => $before_key:literal,)* }
        after_persist { $($(#[$after_doc:meta])* $after:ident => $after_key:literal,)* }
    ) => {
        /// What `Virtual_Network_Vswitch_Set_Extended` changes; unset fields are not sent.
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct VswitchSettings {
            $($(#[$before_doc])* pub $before: Option<String>,)*
            /// Whether the change is also written to SYSTEM CONFIG.
            pub persist: Option<bool>,
            $($(#[$after_doc])* pub $after: Option<String>,)*
        }

        impl VswitchSettings {
            fn pairs(&self, pairs: &mut KeywordPairs) {
                $(pairs.push_optional($before_key, self.$before.as_ref());)*
                pairs.push_optional("persist", self.persist.map(yes_no).as_ref());
                $(pairs.push_optional($after_key, self.$after.as_ref());)*
            }
        }
    };
}

vswitch_settings! {
    before_persist {
        /// Authorizes a guest on the switch (with `persist`, permanently). 212/44 means already authorized;
        /// granting again disturbs the guest's running NICs, so query first.
        grant_userid => "grant_userid",
        /// The VLANs of the granted guest (`100`, `1-256`).
        user_vlan_id => "user_vlan_id",
        revoke_userid => "revoke_userid",
        real_device_address => "real_device_address",
        port_name => "port_name",
        controller_name => "controller_name",
        connection_value => "connection_value",
        queue_memory_limit => "queue_memory_limit",
        routing_value => "routing_value",
        port_type => "port_type",
    }
    after_persist {
        gvrp_value => "gvrp_value",
        mac_id => "mac_id",
        uplink => "uplink",
        osd_sim => "osd_sim",
        nic_userid => "nic_userid",
        nic_vdev => "nic_vdev",
        lacp => "lacp",
        interval => "interval",
        group_rdev => "group_rdev",
        iptimeout => "iptimeout",
        port_isolation => "port_isolation",
        promiscuous => "promiscuous",
        mac_protect => "MAC_protect",
        vlan_counters => "VLAN_counters",
        nic_portselection => "nic_portselection",
        portnum => "portnum",
        portnum_modify => "portnum_modify",
        portnum_remove => "portnum_remove",
        vlan_port_add => "vlan_port_add",
        vlan_port_remove => "vlan_port_remove",
        vlan_delete => "vlan_delete",
        vepa => "vepa",
        trace_size => "trace_size",
        ivl_vlanid => "ivl_vlanid",
        ivl_heartbeat => "ivl_heartbeat",
        lacp_group_type => "lacp_group_type",
    }
}

/// `Virtual_Network_Vswitch_Set_Extended`: changes a virtual switch: grants and revokes, VLANs, port types,
/// devices. 212/40 means there is no such switch, 396/2846 that it is not VLAN-aware.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VirtualNetworkVswitchSetExtended {
    pub target: String,
    pub switch_name: String,
    pub settings: VswitchSettings,
}

smapi_function!(VirtualNetworkVswitchSetExtended, "Virtual_Network_Vswitch_Set_Extended", (),
    parameters(self, writer) {
        require_value("switch_name", &self.switch_name)?;
        let mut pairs = KeywordPairs::new();
        pairs.push("switch_name", self.switch_name.as_str());
        self.settings.pairs(&mut pairs);
        writer.unframed_pairs("vswitch keywords", &pairs)
    },
    output(_reply) { Ok(()) }
);

/// `Virtual_Network_Vswitch_Delete_Extended`: removes a virtual switch. 212/40 means there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualNetworkVswitchDeleteExtended {
    pub target: String,
    pub switch_name: String,
    pub persist: Option<bool>,
}

impl VirtualNetworkVswitchDeleteExtended {
    pub fn new(target: impl Into<String>, switch_name: impl Into<String>, persist: Option<bool>) -> Self {
        VirtualNetworkVswitchDeleteExtended { target: target.into(), switch_name: switch_name.into(), persist }
    }
}

smapi_function!(VirtualNetworkVswitchDeleteExtended, "Virtual_Network_Vswitch_Delete_Extended", (),
    parameters(self, writer) {
        require_value("switch_name", &self.switch_name)?;
        let mut pairs = KeywordPairs::new();
        pairs
            .push("switch_name", self.switch_name.as_str())
            .push_optional("persist", self.persist.map(yes_no).as_ref());
        writer.unframed_pairs("vswitch keywords", &pairs)
    },
    output(_reply) { Ok(()) }
);

/// `Virtual_Network_Vswitch_Query_Extended`: the switches (`*` for all) with their attributes, real devices,
/// authorized guests and their VLANs, and connected adapters with their MAC addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualNetworkVswitchQueryExtended {
    pub target: String,
    pub switch_name: String,
    /// `YES` to include the VEPA status.
    pub vepa_status: String,
}

impl VirtualNetworkVswitchQueryExtended {
    pub fn new(target: impl Into<String>, switch_name: impl Into<String>, vepa_status: impl Into<String>) -> Self {
        VirtualNetworkVswitchQueryExtended {
            target: target.into(),
            switch_name: switch_name.into(),
            vepa_status: vepa_status.into(),
        }
    }
}

const VSWITCH_ATTRIBUTES: &[&str] = &[
    "switch_name",
    "transport_type",
    "port_type",
    "queue_memory_limit",
    "routing_value",
    "vlan_awareness",
    "vlan_id",
    "native_vlan_id",
    "mac_address",
    "gvrp_request_attribute",
    "gvrp_enabled_attribute",
    "switch_status",
    "link_ag",
    "lag_interval",
    "lag_group",
    "ip_timeout",
    "switch_type",
    "isolation_status",
    "mac_protect",
    "user_port_based",
    "vlan_counters",
    "vepa_status",
    "spg_scope",
];

const VSWITCH_QUERY_LAYOUT: Layout = Layout {
    fields: &[Field::CountedStructArray(
        "vswitches",
        &[
            Field::Words("attributes", Words { names: VSWITCH_ATTRIBUTES, rest: None }),
            Field::WordLines(
                "real_devices",
                Words {
                    names: &[
                        "real_device_address",
                        "virtual_device_address",
                        "controller_name",
                        "port_name",
                        "device_status",
                        "device_error_status",
                    ],
                    rest: None,
                },
            ),
            Field::WordLines(
                "authorized_users",
                Words {
                    names: &["port_number", "grant_userid", "promiscuous_mode", "osd_sim", "vlan_count"],
                    rest: Some("vlan_ids"),
                },
            ),
            Field::WordLines(
                "connected_adapters",
                Words { names: &["adapter_owner", "adapter_vdev", "adapter_mac_address", "adapter_type"], rest: None },
            ),
            Field::WordLines("uplink_nics", Words { names: &["userid", "vdev", "error_status"], rest: None }),
            Field::WordLines("global_members", Words { names: &["member_name", "member_state"], rest: None }),
        ],
    )],
    optional: true,
};

/// One virtual switch, with CP's words for each attribute (`ETHERNET`, `AWARE`, `01024`...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VswitchInfo {
    pub switch_name: String,
    pub transport_type: String,
    pub port_type: String,
    pub queue_memory_limit: String,
    pub routing_value: String,
    pub vlan_awareness: String,
    pub vlan_id: String,
    pub native_vlan_id: String,
    pub mac_address: String,
    pub gvrp_request_attribute: String,
    pub gvrp_enabled_attribute: String,
    pub switch_status: String,
    pub link_ag: String,
    pub lag_interval: String,
    pub lag_group: String,
    pub ip_timeout: String,
    pub switch_type: String,
    pub isolation_status: String,
    pub mac_protect: String,
    pub user_port_based: String,
    pub vlan_counters: String,
    pub vepa_status: String,
    pub spg_scope: String,
    pub real_devices: Vec<RealDevice>,
    pub authorized_users: Vec<AuthorizedUser>,
    pub connected_adapters: Vec<ConnectedAdapter>,
    pub uplink_nics: Vec<UplinkNic>,
    pub global_members: Vec<GlobalMember>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealDevice {
    pub real_device_address: String,
    pub virtual_device_address: String,
    pub controller_name: String,
    pub port_name: String,
    pub device_status: String,
    pub device_error_status: String,
}

/// A guest granted on the switch, with its VLANs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizedUser {
    pub port_number: String,
    pub grant_userid: String,
    pub promiscuous_mode: String,
    pub osd_sim: String,
    pub vlan_ids: Vec<String>,
}

/// A NIC coupled to the switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectedAdapter {
    pub owner: String,
    pub vdev: String,
    pub mac_address: String,
    pub adapter_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UplinkNic {
    pub userid: String,
    pub vdev: String,
    pub error_status: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalMember {
    pub name: String,
    pub state: String,
}

fn each<T>(records: Vec<Record>, map: impl Fn(Record) -> Result<T, DecodeError>) -> Result<Vec<T>, DecodeError> {
    records.into_iter().map(map).collect()
}

fn vswitch_info(mut record: Record) -> Result<VswitchInfo, DecodeError> {
    let mut attributes = record.record("attributes")?;
    let mut attribute = |name: &'static str| attributes.text(name);
    let mut info = VswitchInfo {
        switch_name: attribute("switch_name")?,
        transport_type: attribute("transport_type")?,
        port_type: attribute("port_type")?,
        queue_memory_limit: attribute("queue_memory_limit")?,
        routing_value: attribute("routing_value")?,
        vlan_awareness: attribute("vlan_awareness")?,
        vlan_id: attribute("vlan_id")?,
        native_vlan_id: attribute("native_vlan_id")?,
        mac_address: attribute("mac_address")?,
        gvrp_request_attribute: attribute("gvrp_request_attribute")?,
        gvrp_enabled_attribute: attribute("gvrp_enabled_attribute")?,
        switch_status: attribute("switch_status")?,
        link_ag: attribute("link_ag")?,
        lag_interval: attribute("lag_interval")?,
        lag_group: attribute("lag_group")?,
        ip_timeout: attribute("ip_timeout")?,
        switch_type: attribute("switch_type")?,
        isolation_status: attribute("isolation_status")?,
        mac_protect: attribute("mac_protect")?,
        user_port_based: attribute("user_port_based")?,
        vlan_counters: attribute("vlan_counters")?,
        vepa_status: attribute("vepa_status")?,
        spg_scope: attribute("spg_scope")?,
        ..Default::default()
    };
    info.real_devices = each(record.records("real_devices")?, |mut device| {
        Ok(RealDevice {
            real_device_address: device.text("real_device_address")?,
            virtual_device_address: device.text("virtual_device_address")?,
            controller_name: device.text("controller_name")?,
            port_name: device.text("port_name")?,
            device_status: device.text("device_status")?,
            device_error_status: device.text("device_error_status")?,
        })
    })?;
    info.authorized_users = each(record.records("authorized_users")?, |mut user| {
        Ok(AuthorizedUser {
            port_number: user.text("port_number")?,
            grant_userid: user.text("grant_userid")?,
            promiscuous_mode: user.text("promiscuous_mode")?,
            osd_sim: user.text("osd_sim")?,
            vlan_ids: user.texts("vlan_ids")?,
        })
    })?;
    info.connected_adapters = each(record.records("connected_adapters")?, |mut adapter| {
        Ok(ConnectedAdapter {
            owner: adapter.text("adapter_owner")?,
            vdev: adapter.text("adapter_vdev")?,
            mac_address: adapter.text("adapter_mac_address")?,
            adapter_type: adapter.text("adapter_type")?,
        })
    })?;
    info.uplink_nics = each(record.records("uplink_nics")?, |mut uplink| {
        Ok(UplinkNic {
            userid: uplink.text("userid")?,
            vdev: uplink.text("vdev")?,
            error_status: uplink.text("error_status")?,
        })
    })?;
    info.global_members = each(record.records("global_members")?, |mut member| {
        Ok(GlobalMember { name: member.text("member_name")?, state: member.text("member_state")? })
    })?;
    Ok(info)
}

smapi_function!(VirtualNetworkVswitchQueryExtended, "Virtual_Network_Vswitch_Query_Extended", Vec<VswitchInfo>,
    parameters(self, writer) {
        require_value("switch_name", &self.switch_name)?;
        let mut pairs = KeywordPairs::new();
        pairs.push("switch_name", self.switch_name.as_str()).push("vepa_status", self.vepa_status.as_str());
        writer.unframed_pairs("vswitch keywords", &pairs)
    },
    output(reply) { each(decode(&VSWITCH_QUERY_LAYOUT, reply)?.records("vswitches")?, vswitch_info) }
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{Credentials, encode_request};

    #[test]
    fn set_extended_sends_persist_in_its_documented_place() {
        let request = VirtualNetworkVswitchSetExtended {
            target: "maint".into(),
            switch_name: "vsw1".into(),
            settings: VswitchSettings {
                grant_userid: Some("linux01".into()),
                promiscuous: Some("NO".into()),
                persist: Some(true),
                ..Default::default()
            },
        };
        let frame = encode_request(&request, &Credentials::none()).unwrap();
        assert!(frame.ends_with(b"maintswitch_name=vsw1\x00grant_userid=linux01\x00persist=YES\x00promiscuous=NO\x00"));
    }
}
