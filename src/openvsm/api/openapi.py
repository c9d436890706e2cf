"""OpenAPI 3 description of ``/api/n1k`` (served at ``/api/n1k/openapi.json``).

Written by hand as data so that it says exactly what the driver sends; the
request schemas mirror the request structs of ``openvsm.api.n1kv``
(``additionalProperties: false``: unknown keys are refused).
"""

from __future__ import annotations

import copy
from typing import Any, Final

_STR: Final = {"type": "string"}
_NSTR: Final = {"type": "string", "nullable": True}
_ID: Final = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,199}$"}


def _obj(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": False,
    }


_ERRORS: Final = {
    "400": "Malformed or invalid request (JSON, types, missing/unknown fields, ranges)",
    "401": "Missing or wrong HTTP Basic credentials",
    "404": "The resource to update or show does not exist",
    "409": "Conflicts with the configuration (duplicate, missing reference, in use)",
    "403": "The user's role (network-operator) may not change the configuration",
    "413": "Request body larger than 1 MiB",
    "429": "Too many failed logins from this source or for this user (Retry-After)",
    "503": "This VSM is the standby (the text names the active), or the commit failed",
}


def _responses(ok: str, json_ok: bool, codes: tuple[str, ...]) -> dict[str, Any]:
    ok_content = (
        {"application/json": {"schema": {"type": "object"}}}
        if json_ok
        else {"text/plain": {"schema": _STR}}
    )
    out: dict[str, Any] = {"200": {"description": ok, "content": ok_content}}
    for code in codes:
        out[code] = {"description": _ERRORS[code], "content": {"text/plain": {"schema": _STR}}}
    if "401" in codes:
        out["429"] = {"description": _ERRORS["429"], "content": {"text/plain": {"schema": _STR}}}
    if "503" in codes:  # a write: refused by role with a JSON reason
        reason = _obj({"error": _STR, "reason": _STR, "user": _STR, "role": _STR}, [])
        reason["additionalProperties"] = True
        out["403"] = {
            "description": _ERRORS["403"],
            "content": {"application/json": {"schema": reason}},
        }
    return out


def _get(summary: str, params: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": _responses(summary, True, ("401",))}
    if params:
        op["parameters"] = params
        op["responses"] = _responses(summary, True, ("401", "404"))
    return op


def _post(summary: str, schema: dict[str, Any], params: list[dict[str, Any]] | None = None) -> Any:
    op: dict[str, Any] = {
        "summary": summary,
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
        "responses": _responses(
            "Done (or already so)", False, ("400", "401", "404", "409", "413", "503")
        ),
    }
    if params:
        op["parameters"] = params
    return op


def _delete(summary: str, params: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "summary": summary,
        "parameters": params,
        "responses": _responses("Deleted (or did not exist)", False, ("400", "401", "409", "503")),
    }


def _param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": _ID,
    }


_LOGICAL_NETWORK: Final = _obj({"description": _STR}, [])
_NETWORK_PROFILE: Final = _obj(
    {"name": _STR, "description": _STR, "id": _ID, "logicalNetwork": _ID},
    ["name", "description", "id", "logicalNetwork"],
)
_NETWORK_SEGMENT: Final = _obj(
    {
        "publishName": _NSTR,
        "description": _NSTR,
        "id": _ID,
        "tenantId": _NSTR,
        "mode": {"type": "string", "enum": ["access"], "nullable": True},
        "segmentType": {"type": "string", "enum": ["vlan", "vxlan", "trunk"]},
        "networkSegmentPool": _ID,
        "vlan": {
            "type": "integer",
            "minimum": 1,
            "maximum": 4094,
            "description": "vlan segments only; 3968-4047 are reserved",
        },
        "vxlan": {"type": "integer", "minimum": 4096, "maximum": 16000000},
        "bridgeDomain": {**_ID, "description": "vxlan segments only: <network id>_bd"},
    },
    [],
)
_NETWORK_SEGMENT["description"] = (
    "Create: segmentType and networkSegmentPool (and vlan or bridgeDomain). "
    "Update of an existing id: description and tenantId only."
)
_BRIDGE_DOMAIN: Final = _obj(
    {
        "name": _ID,
        "segmentId": {"type": "integer", "minimum": 4096, "maximum": 16000000},
        "subType": {"type": "string", "enum": ["unicast", "native_vxlan"]},
        "tenantId": _STR,
        "groupIp": {**_NSTR, "description": "multicast group, native_vxlan only"},
    },
    ["name", "segmentId", "subType"],
)
_IP_POOL: Final = _obj(
    {
        "addressRangeStart": _NSTR,
        "addressRangeEnd": _NSTR,
        "ipAddressSubnet": {**_NSTR, "description": "netmask, e.g. 255.255.255.0"},
        "description": _NSTR,
        "gateway": _NSTR,
        "dhcp": {"type": "boolean", "nullable": True},
        "dnsServersList": {"type": "array", "items": _STR, "nullable": True, "maxItems": 16},
        "networkAddress": _NSTR,
        "netSegmentName": {**_ID, "description": "network segment id"},
        "id": _ID,
        "tenantId": _NSTR,
    },
    [],
)
_IP_POOL["description"] = (
    "Create: netSegmentName, networkAddress, ipAddressSubnet and the rest. "
    "Update of an existing id: description, dhcp, dnsServersList."
)
_PORT: Final = _obj(
    {
        "name": {**_ID, "description": "vmn_<policy profile id>_<network id>"},
        "networkSegmentId": _ID,
        "networkSegment": _ID,
        "portProfile": {**_STR, "description": "policy profile name"},
        "portProfileId": _ID,
        "tenantId": _STR,
        "portId": _ID,
        "macAddress": {"type": "string", "pattern": "^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$"},
        "portType": _STR,
        "ipAddress": _NSTR,
        "subnetId": {**_ID, "nullable": True},
    },
    [
        "name",
        "networkSegmentId",
        "networkSegment",
        "portProfile",
        "portProfileId",
        "tenantId",
        "portId",
        "macAddress",
    ],
)
_SYNC: Final = _obj(
    {"status": {"type": "string", "enum": ["start", "end", "no-change"]}}, ["status"]
)

_DOCUMENT: Final[dict[str, Any]] = {
    "openapi": "3.0.3",
    "info": {
        "title": "openvsm n1kv REST API",
        "version": "1.0",
        "description": (
            "Wire-compatible with the OpenStack Neutron n1kv ML2 driver. HTTP Basic "
            "auth; success is exactly 200; GET answers application/json, POST/DELETE "
            "text/plain; errors are text/plain sentences. The standby answers writes "
            "with 503 naming the active."
        ),
    },
    "servers": [{"url": "/api/n1k"}],
    "components": {"securitySchemes": {"basic": {"type": "http", "scheme": "basic"}}},
    "security": [{"basic": []}],
    "paths": {
        "/virtual-port-profile": {"get": _get("Policy profiles: {name: {properties: {name, id}}}")},
        "/logical-network/{name}": {
            "post": _post(
                "Create a logical network (<network profile id>_log_net)",
                _LOGICAL_NETWORK,
                [_param("name", "logical network name")],
            ),
            "delete": _delete("Delete a logical network", [_param("name", "logical network name")]),
        },
        "/network-segment-pool": {"get": _get("Network profiles keyed by id")},
        "/network-segment-pool/{id}": {
            "post": _post(
                "Create a network segment pool (network profile)",
                _NETWORK_PROFILE,
                [_param("id", "network profile id")],
            ),
            "delete": _delete(
                "Delete a network segment pool", [_param("id", "network profile id")]
            ),
        },
        "/network-segment": {"get": _get("Networks keyed by id")},
        "/network-segment/{id}": {
            "get": _get("One network's details", [_param("id", "network id")]),
            "post": _post(
                "Create or update a network segment",
                _NETWORK_SEGMENT,
                [_param("id", "network id")],
            ),
            "delete": _delete("Delete a network segment", [_param("id", "network id")]),
        },
        "/kvm/bridge-domain": {
            "get": _get("Bridge domains keyed by name"),
            "post": _post("Create a bridge domain (one VXLAN)", _BRIDGE_DOMAIN),
        },
        "/kvm/bridge-domain/{name}": {
            "delete": _delete("Delete a bridge domain", [_param("name", "bridge domain name")])
        },
        "/ip-pool-template": {"get": _get("Subnets keyed by id")},
        "/ip-pool-template/{id}": {
            "post": _post(
                "Create or update an ip pool template (subnet)",
                _IP_POOL,
                [_param("id", "subnet id")],
            ),
            "delete": _delete("Delete an ip pool template", [_param("id", "subnet id")]),
        },
        "/kvm/vm-network": {
            "get": _get("VM networks: {name: {properties: {portId: 'id1,id2', ...}}}"),
            "post": _post(
                "Add a port; the first port of a (policy profile, network) pair creates "
                "the VM network and its dynamic port profile",
                _PORT,
            ),
        },
        "/kvm/vm-network/{name}/ports/{port}": {
            "delete": _delete(
                "Remove a port; the VM network and its dynamic port profile go with the last",
                [_param("name", "VM network name"), _param("port", "port id")],
            )
        },
        "/kvm/config-md5-hashes": {
            "get": _get(
                "md5_hashes.properties: network_profile_md5, subnet_md5, network_md5, "
                "port_md5, consolidated_md5"
            )
        },
        "/sync-notification": {"post": _post("Driver sync notification", _SYNC)},
        "/openapi.json": {
            "get": {
                "summary": "This document (no authentication)",
                "security": [],
                "responses": _responses("OpenAPI 3 document", True, ()),
            }
        },
    },
}


def openapi_document() -> dict[str, Any]:
    """A fresh copy of the document (callers may change theirs)."""
    return copy.deepcopy(_DOCUMENT)
