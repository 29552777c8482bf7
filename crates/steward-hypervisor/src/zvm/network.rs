//! Virtual switches: created and deleted as Steward networks, and the grants of guests on them. A grant is
//! checked before it is made and never made twice: granting a user again resets its running NICs' port on
//! the switch.

use smapi::ErrorKind;
use smapi::functions::{
    VirtualNetworkVswitchCreateExtended, VirtualNetworkVswitchDeleteExtended, VirtualNetworkVswitchQueryExtended,
    VirtualNetworkVswitchSetExtended, VswitchInfo, VswitchSettings,
};
use tracing::info;

use super::{ZvmHost, errors, names};
use crate::error::{HypervisorError, Result};

impl ZvmHost {
    /// The virtual switch `name` (upper case), or `None` when it does not exist.
    pub(crate) async fn query_vswitch(&self, name: &str) -> Result<Option<VswitchInfo>> {
        let query = VirtualNetworkVswitchQueryExtended::new(&self.smapi_user, name, "");
        match self.client.call(&query).await {
            Ok(switches) => Ok(switches.into_iter().find(|switch| switch.switch_name.eq_ignore_ascii_case(name))),
            Err(error) if errors::codes(&error) == Some((212, 40)) || errors::is_kind(&error, ErrorKind::NotFound) => {
                Ok(None)
            }
            Err(error) => Err(errors::map(format!("querying virtual switch {name}"), error)),
        }
    }

    /// Grants `userid` on the switch unless it is granted already; returns whether a grant was made.
    pub async fn ensure_grant(&self, vswitch: &str, userid: &str) -> Result<bool> {
        let switch = self
            .query_vswitch(vswitch)
            .await?
            .ok_or_else(|| HypervisorError::NetworkNotFound { network: vswitch.to_owned() })?;
        if switch.authorized_users.iter().any(|user| user.grant_userid.eq_ignore_ascii_case(userid)) {
            return Ok(false);
        }
        let grant = VirtualNetworkVswitchSetExtended {
            target: self.smapi_user.clone(),
            switch_name: vswitch.to_owned(),
            settings: VswitchSettings {
                grant_userid: Some(userid.to_owned()),
                persist: Some(true),
                ..Default::default()
            },
        };
        match self.client.call(&grant).await {
            Ok(()) => {
                info!(vswitch, guest = userid, "guest granted on the virtual switch");
                Ok(true)
            }
            // Granted meanwhile by someone else: the goal is reached.
            Err(error) if errors::is_kind(&error, ErrorKind::AlreadyAuthorized) => Ok(false),
            Err(error) if errors::codes(&error) == Some((212, 40)) => {
                Err(HypervisorError::NetworkNotFound { network: vswitch.to_owned() })
            }
            Err(error) => Err(errors::map(format!("granting {userid} on virtual switch {vswitch}"), error)),
        }
    }

    /// Defines a VLAN-unaware Ethernet virtual switch (on the configured real device, or without an uplink),
    /// persistently; an existing one counts as created.
    pub async fn network_create(&self, network: &str) -> Result<()> {
        let name = names::zvm_name("network (a virtual switch)", network)?;
        let request = VirtualNetworkVswitchCreateExtended {
            target: self.smapi_user.clone(),
            switch_name: name.clone(),
            real_device_address: self.vswitch_real_device.clone().unwrap_or_default(),
            port_name: String::new(),
            controller_name: String::new(),
            connection_value: if self.vswitch_real_device.is_some() { "CONNECT" } else { "NOUPLINK" }.to_owned(),
            queue_memory_limit: None,
            routing_value: String::new(),
            transport_type: "ETHERNET".to_owned(),
            vlan_id: String::new(),
            port_type: String::new(),
            persist: Some(true),
            gvrp_value: String::new(),
            native_vlanid: None,
            vswitch_type: String::new(),
            iptimeout: None,
            port_selection: String::new(),
            group_name: String::new(),
            vswitch_domain: String::new(),
            vswitch_global: String::new(),
        };
        match self.client.call(&request).await {
            Ok(()) => Ok(()),
            Err(error) if errors::codes(&error) == Some((212, 36)) => Ok(()),
            Err(error) => Err(errors::map(format!("creating virtual switch {name}"), error)),
        }
    }

    /// Deletes the virtual switch (persistently); a missing one counts as deleted.
    pub async fn network_delete(&self, network: &str) -> Result<()> {
        let name = names::zvm_name("network (a virtual switch)", network)?;
        let request = VirtualNetworkVswitchDeleteExtended::new(&self.smapi_user, &name, Some(true));
        match self.client.call(&request).await {
            Ok(()) => Ok(()),
            Err(error) if errors::codes(&error) == Some((212, 40)) => Ok(()),
            Err(error) => Err(errors::map(format!("deleting virtual switch {name}"), error)),
        }
    }
}
