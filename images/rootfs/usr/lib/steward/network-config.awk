# network-config.awk: turns a NoCloud network-config (version 1, the shape Steward's QEMU driver writes) into
# one line per subnet for steward-firstboot: `mac name type address gateway dns,dns` ("-" for an absent
# field; type is static or dhcp). Only the keys Steward writes are understood: type: physical, name,
# mac_address, subnets with type static|dhcp, address, gateway and dns_nameservers.
function flush() {
    if (mac != "" && kind != "") {
        printf "%s %s %s %s %s %s\n", tolower(mac), (name == "" ? "-" : name), kind,
            (address == "" ? "-" : address), (gateway == "" ? "-" : gateway), (dns == "" ? "-" : dns)
    }
    kind = ""; address = ""; gateway = ""; dns = ""; in_dns = 0
}
function value(line) { sub(/^[^:]*:[ \t]*/, "", line); gsub(/["']/, "", line); sub(/[ \t]+$/, "", line); return line }
/^[ \t]*#/ { next }
/^[ \t]*- type: physical/ { flush(); mac = ""; name = ""; next }
/^[ \t]*name:/ { name = value($0); next }
/^[ \t]*mac_address:/ { mac = value($0); next }
/^[ \t]*- type: (static|dhcp|dhcp4)/ { flush(); kind = value($0); if (kind == "dhcp4") kind = "dhcp"; next }
/^[ \t]*address:/ { address = value($0); in_dns = 0; next }
/^[ \t]*gateway:/ { gateway = value($0); in_dns = 0; next }
/^[ \t]*dns_nameservers:/ { in_dns = 1; next }
/^[ \t]*- / { if (in_dns) { entry = $0; sub(/^[ \t]*-[ \t]*/, "", entry); gsub(/["']/, "", entry); dns = (dns == "" ? entry : dns "," entry) } next }
{ in_dns = 0 }
END { flush() }
