"""`kv get|put|delete|export|import`: Consul's command/kv, with its flags, texts and exit codes.

Values are bytes end to end: `get` writes them to stdout unchanged (a binary value stays binary), `put` takes them
from the argument, `@file` or stdin (`-`) and `-base64` decodes them first.  Export and import speak
`consul kv export`'s JSON (`[{"key", "flags", "value" (base64)}]`, tab-indented as Go's MarshalIndent).
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Callable, Mapping
from typing import Any

from agent.cli_client import ClientError
from agent.cli_command import HTTP_FLAGS, PARTITION_FLAG, SERVER_FLAGS, Command, _client_or_error
from agent.cli_output import _err, _out
from agent.goflags import Flag, go_uint
from agent.gostrings import go_base64, to_bytes
from agent.kvapi import KV, KVPair, QueryOptions, go_path_join

# --------------------------------------------------------------------------------------------------------------
# Shared bits


def _out_bytes(data: bytes) -> None:
    """cli.Ui.Info of raw bytes: the value as stored, then a newline."""
    sys.stdout.flush()
    sys.stdout.buffer.write(data + b"\n")
    sys.stdout.buffer.flush()


def _one_key(args: list[str]) -> str | None:
    """The optional single KEY argument, its one leading `/` dropped (as Consul does); None after the error."""
    if len(args) > 1:
        _err(f"Too many arguments (expected 1, got {len(args)})")
        return None
    return args[0].removeprefix("/") if args else ""


def load_data_source(data: str, stdin: Callable[[], bytes]) -> bytes:
    """helpers.LoadDataSource: `@path` reads a file, a lone `-` reads stdin, anything else is the data itself.

    Raises ValueError with Consul's text (`Failed to read file: open x: no such file or directory`).
    """
    if data.startswith("@"):
        path = data[1:]
        try:
            with open(to_bytes(path), "rb") as fh:
                return fh.read()
        except OSError as err:
            reason = (err.strerror or str(err)).lower()
            raise ValueError(f"Failed to read file: open {path}: {reason}") from None
    if data == "-":
        try:
            return stdin()
        except OSError as err:
            raise ValueError(f"Failed to read stdin: {err}") from None
    return to_bytes(data)


def _read_stdin() -> bytes:
    return sys.stdin.buffer.read()


def go_b64decode(data: bytes | str) -> bytes:
    """base64.StdEncoding.DecodeString, with Go's error text; ValueError names the bad byte's offset."""
    return go_base64(data.decode("utf-8", "surrogateescape") if isinstance(data, bytes) else data)


def pretty_pair(pair: KVPair, base64_value: bool, keys_only: bool = False) -> bytes:
    """kv get -detailed: tabwriter(minwidth 0, padding 6) over the field names, the value last and unpadded.

    ``keys_only`` (-keys -recurse -detailed) leaves the value out, and the text then ends with a newline.
    """
    rows = [
        ("CreateIndex", str(pair.create_index)),
        ("Flags", str(pair.flags)),
        ("Key", pair.key),
        ("LockIndex", str(pair.lock_index)),
        ("ModifyIndex", str(pair.modify_index)),
        ("Session", pair.session or "-"),
    ]
    width = max(len(name) for name, _ in rows) + 6
    head = "".join(f"{name.ljust(width)}{value}\n" for name, value in rows)
    if keys_only:
        return to_bytes(head)
    return to_bytes(head + "Value".ljust(width)) + _value_text(pair, base64_value)


def _value_text(pair: KVPair, base64_value: bool) -> bytes:
    return base64.b64encode(pair.value) if base64_value else pair.value


def go_json_indent(value: Any) -> str:
    """json.MarshalIndent(value, "", "\\t"): raw UTF-8, but <, >, & and U+2028/9 escaped as Go does."""
    text = json.dumps(value, indent="\t", ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                          ("\u2029", "\\u2029")):  # fmt: skip
        text = text.replace(char, escaped)
    return text


# --------------------------------------------------------------------------------------------------------------
# kv get


def run_get(values: dict[str, Any], args: list[str]) -> int:
    key = _one_key(args)
    if key is None:
        return 1
    recurse, keys_only = bool(values.get("recurse")), bool(values.get("keys"))
    if not key and not (recurse or keys_only):
        _err("Error! Missing KEY argument")
        return 1
    client = _client_or_error(values)
    if client is None:
        return 1
    kv, options = KV(client), QueryOptions(stale=bool(values.get("stale")))
    detailed, b64 = bool(values.get("detailed")), bool(values.get("base64"))
    try:
        if keys_only and recurse:
            pairs, _index = kv.list(key, options)
            for i, pair in enumerate(pairs):
                if not detailed:
                    _out(pair.key)
                    continue
                _out_bytes(pretty_pair(pair, False, keys_only=True))
                if i < len(pairs) - 1:
                    _out("")
            return 0
        if keys_only:
            for name in kv.keys(key, values.get("separator", "/"), options):
                _out(name)
            return 0
        if recurse:
            pairs, _index = kv.list(key, options)
            for i, pair in enumerate(pairs):
                if detailed:
                    _out_bytes(pretty_pair(pair, b64))
                    if i < len(pairs) - 1:
                        _out("")
                else:
                    _out_bytes(to_bytes(pair.key) + b":" + _value_text(pair, b64))
            return 0
        found, _index = kv.get(key, options)
    except ClientError as err:
        _err(f"Error querying Consul agent: {err}")
        return 1
    if found is None:
        _err(f"Error! No key exists at: {key}")
        return 1
    _out_bytes(pretty_pair(found, b64) if detailed else _value_text(found, b64))
    return 0


# --------------------------------------------------------------------------------------------------------------
# kv put


def run_put(values: dict[str, Any], args: list[str]) -> int:
    if not args:
        _err("Error! Missing KEY argument")
        return 1
    if len(args) > 2:
        _err(f"Error! Too many arguments (expected 1 or 2, got {len(args)})")
        return 1
    key = args[0]
    try:
        data = load_data_source(args[1], _read_stdin) if len(args) == 2 else b""
    except ValueError as err:
        _err(f"Error! {err}")
        return 1
    if values.get("base64"):
        try:
            data = go_b64decode(data)
        except ValueError as err:
            # Consul prints this and writes what it could decode anyway; we stop, so bad input changes nothing.
            _err(f"Error! Cannot base 64 decode data: {err}")
            return 1
    session = values.get("session", "")
    acquire, release = bool(values.get("acquire")), bool(values.get("release"))
    if (acquire or release) and not session:
        _err("Error! Missing -session (required with -acquire and -release)")
        return 1
    client = _client_or_error(values)
    if client is None:
        return 1
    kv, flags, modify_index = KV(client), values.get("flags", 0), values.get("modify-index", 0)
    try:
        if values.get("cas"):
            written = kv.cas(key, data, flags, modify_index)
            if not written and modify_index == 0:
                _err(f"Error! Did not write to {key}: CAS performed with index=0 and key already exists.")
                return 1
            if not written:
                _err(f"Error! Did not write to {key}: CAS failed")
                return 1
        elif acquire or release:
            verb, verb_done = ("acquire", "acquired") if acquire else ("release", "released")
            if not (kv.acquire if acquire else kv.release)(key, data, flags, session):
                _err(f"Error! Did not {verb} lock")
                return 1
            _out(f"Success! Lock {verb_done} on: {key}")
            return 0
        else:
            kv.put(key, data, flags)
    except ClientError as err:
        if values.get("cas"):
            _err(f"Error! Did not write to {key}: {err}")
        elif release:
            _err(f"Error! Failed writing data: {key}")  # sic: Consul names the key here, not the error
        else:
            _err(f"Error! Failed writing data: {err}")
        return 1
    _out(f"Success! Data written to: {key}")
    return 0


# --------------------------------------------------------------------------------------------------------------
# kv delete


def run_delete(values: dict[str, Any], args: list[str]) -> int:
    key = _one_key(args)
    if key is None:
        return 1
    recurse, cas, modify_index = bool(values.get("recurse")), bool(values.get("cas")), values.get("modify-index", 0)
    if not key and not recurse:
        _err("Error! Missing KEY argument")
        return 1
    if cas and modify_index == 0:
        _err("Cannot delete a key that does not exist. Provide a -modify-index greater than than 0.")
        return 1
    if modify_index and not cas:
        _err("Cannot specify -modify-index without -cas!")
        return 1
    if recurse and cas:
        _err("Cannot specify both -cas and -recurse!")
        return 1
    client = _client_or_error(values)
    if client is None:
        return 1
    kv = KV(client)
    if recurse:
        try:
            kv.delete_tree(key)
        except ClientError as err:
            _err(f"Error! Did not delete prefix {key}: {err}")
            return 1
        _out(f"Success! Deleted keys with prefix: {key}")
        return 0
    if cas:
        try:
            deleted = kv.delete_cas(key, modify_index)
        except ClientError as err:
            _err(f"Error! Did not delete key {key}: {err}")
            return 1
        if not deleted:
            _err(f"Error! Did not delete key {key}: CAS failed")
            return 1
    else:
        try:
            kv.delete(key)
        except ClientError as err:
            _err(f"Error deleting key {key}: {err}")
            return 1
    _out(f"Success! Deleted key: {key}")
    return 0


# --------------------------------------------------------------------------------------------------------------
# kv export / import


def export_entry(pair: KVPair) -> dict[str, Any]:
    """impexp.ToEntry."""
    return {"key": pair.key, "flags": pair.flags, "value": base64.b64encode(pair.value).decode("ascii")}


def run_export(values: dict[str, Any], args: list[str]) -> int:
    prefix = _one_key(args)
    if prefix is None:
        return 1
    client = _client_or_error(values)
    if client is None:
        return 1
    try:
        pairs, _index = KV(client).list(prefix, QueryOptions(stale=bool(values.get("stale"))))
    except ClientError as err:
        _err(f"Error querying Consul agent: {err}")
        return 1
    _out(go_json_indent([export_entry(p) for p in pairs]))
    return 0


def parse_entries(data: bytes) -> list[tuple[str, int, str]]:
    """json.Unmarshal into []*impexp.Entry: (key, flags, base64 value); field names match case-insensitively.

    Raises ValueError with a message in the spirit of Go's decoder errors.
    """
    try:
        doc = json.loads(data)
    except ValueError as err:
        raise ValueError(str(err)) from None
    if doc is None:
        return []
    if not isinstance(doc, list):
        raise ValueError(f"json: cannot unmarshal {_json_kind(doc)} into Go value of type []*impexp.Entry")
    entries = []
    for item in doc:
        if item is None:
            continue
        if not isinstance(item, dict):
            raise ValueError(f"json: cannot unmarshal {_json_kind(item)} into Go value of type impexp.Entry")
        fields = {k.lower(): v for k, v in item.items()}
        key, flags, value = fields.get("key", ""), fields.get("flags", 0), fields.get("value", "")
        if not isinstance(key, str):
            raise ValueError(f"json: cannot unmarshal {_json_kind(key)} into Go struct field Entry.key of type string")
        if isinstance(flags, bool) or not isinstance(flags, int) or not 0 <= flags < 1 << 64:
            raise ValueError(
                f"json: cannot unmarshal {_json_kind(flags)} into Go struct field Entry.flags of type uint64"
            )
        if not isinstance(value, str):
            raise ValueError(
                f"json: cannot unmarshal {_json_kind(value)} into Go struct field Entry.value of type string"
            )
        entries.append((key, flags, value))
    return entries


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return f"number {json.dumps(value)}"
    return {str: "string", list: "array", dict: "object"}.get(type(value), "null")


def run_import(values: dict[str, Any], args: list[str]) -> int:
    if not args:
        _err("Error! Missing DATA argument")
        return 1
    if len(args) > 1:
        _err(f"Error! Too many arguments (expected 1, got {len(args)})")
        return 1
    if not args[0]:
        _err("Error! Empty DATA argument")
        return 1
    try:
        data = load_data_source(args[0], _read_stdin)
    except ValueError as err:
        _err(f"Error! {err}")
        return 1
    client = _client_or_error(values)
    if client is None:
        return 1
    try:
        entries = parse_entries(data)
    except ValueError as err:
        _err(f"Cannot unmarshal data: {err}")
        return 1
    # Everything is decoded before the first write, so a bad entry late in the file leaves the store untouched.
    decoded = []
    for key, flags, value in entries:
        try:
            decoded.append((key, flags, go_b64decode(value)))
        except ValueError as err:
            _err(f"Error base 64 decoding value for key {key}: {err}")
            return 1
    kv, prefix = KV(client), values.get("prefix", "")
    for key, flags, value in decoded:
        target = go_path_join(prefix, key) + ("/" if key.endswith("/") else "")
        try:
            kv.put(target, value, flags)
        except ClientError as err:
            _err(f"Error! Failed writing data for key {target}: {err}")
            return 1
        _out(f"Imported: {target}")
    return 0


# --------------------------------------------------------------------------------------------------------------
# The command table


def _uint_flag(name: str, help_text: str) -> Flag:
    return Flag(name, help_text, default="0", placeholder="<uint>", convert=go_uint)


CAS_HELP = "Perform a Check-And-Set operation. Specifying this value also requires the -modify-index flag to be set."
MODIFY_INDEX_HELP = (
    "Unsigned integer representing the ModifyIndex of the key. This is used in combination with the -cas flag."
)

GET_FLAGS = (
    Flag("base64", "Base64 encode the value. The default value is false.", is_bool=True),
    Flag("detailed", "Provide additional metadata about the key in addition to the value such as the ModifyIndex "
         "and any flags that may have been set on the key. The default value is false.", is_bool=True),
    Flag("keys", "List keys which start with the given prefix, but not their values. This is especially useful if "
         "you only need the key names themselves. This option is commonly combined with the -separator option. "
         "The default value is false.", is_bool=True),
    Flag("recurse", "Recursively look at all keys prefixed with the given path. The default value is false.",
         is_bool=True),
    Flag("separator", 'String to use as a separator between keys. The default value is "/", but this option is '
         "only taken into account when paired with the -keys flag.", default="/", placeholder="<string>"),
)  # fmt: skip

PUT_FLAGS = (
    Flag("acquire", "Obtain a lock on the key. If the key does not exist, this operation will create the key and "
         "obtain the lock. The session must already exist and be specified via the -session flag. The default "
         "value is false.", is_bool=True),
    Flag("base64", "Treat the data as base 64 encoded. The default value is false.", is_bool=True),
    Flag("cas", CAS_HELP + " The default value is false.", is_bool=True),
    _uint_flag("flags", "Unsigned integer value to assign to this key-value pair. This value is not read by Consul, "
               "so clients can use this value however makes sense for their use case. The default value is 0 (no "
               "flags)."),
    _uint_flag("modify-index", MODIFY_INDEX_HELP),
    Flag("release", "Forfeit the lock on the key at the given path. This requires the -session flag to be set. The "
         "key must be held by the session in order to be unlocked. The default value is false.", is_bool=True),
    Flag("session", "User-defined identifer for this session as a string. This is commonly used with the -acquire "
         "and -release operations to build robust locking, but it can be set on any key. The default value is "
         "empty (no session).", placeholder="<string>"),
)  # fmt: skip

DELETE_FLAGS = (
    Flag("cas", CAS_HELP + " The default value is false.", is_bool=True),
    _uint_flag("modify-index", MODIFY_INDEX_HELP),
    Flag("recurse", "Recursively delete all keys with the path. The default value is false.", is_bool=True),
)

IMPORT_FLAGS = (Flag("prefix", "Key prefix for imported data", placeholder="<string>"),)


def _kv_command(
    name: str, synopsis: str, usage: str, own: tuple[Flag, ...], run: Callable[[dict[str, Any], list[str]], int],
    *, tenancy: bool = True,
) -> Command:
    flags = (*HTTP_FLAGS, *SERVER_FLAGS, *(PARTITION_FLAG if tenancy else ()), *own)
    return Command(name, synopsis, usage, flags, run, uses_server_flags=True)


KV_SUBCOMMANDS: Mapping[str, Command] = {
    "get": _kv_command(
        "get",
        "Retrieves or lists data from the KV store",
        "Usage: consul kv get [options] [KEY_OR_PREFIX]\n\n"
        "  Retrieves the value from Consul's key-value store at the given key name. If no\n"
        "  key exists with that name, an error is returned. If a key exists with that\n"
        "  name but has no data, nothing is returned. If the name or prefix is omitted,\n"
        '  it defaults to "" which is the root of the key-value store.\n\n'
        "  To retrieve the value for the key named \"foo\" in the key-value store:\n\n"
        "      $ consul kv get foo\n\n"
        "  To treat the path as a prefix and list all keys which start with the given\n"
        '  prefix, specify the "-recurse" flag; to list only the keys, use "-keys".',
        GET_FLAGS,
        run_get,
        tenancy=False,
    ),
    "put": _kv_command(
        "put",
        "Sets or updates data in the KV store",
        "Usage: consul kv put [options] KEY [DATA]\n\n"
        "  Writes the data to the given path in the key-value store. The data can be of\n"
        "  any type.\n\n"
        "      $ consul kv put config/redis/maxconns 5\n\n"
        '  The data can also be consumed from a file on disk by prefixing with the "@"\n'
        "  symbol. For example:\n\n"
        "      $ consul kv put config/program/license @license.lic\n\n"
        '  Or it can be read from stdin using the "-" symbol:\n\n'
        '      $ echo "abcd1234" | consul kv put config/program/license -\n\n'
        "  The DATA argument itself is optional. If omitted, this will create an empty\n"
        "  key-value pair at the specified path. If the -base64 flag is specified, the\n"
        "  data will be treated as base 64 encoded.\n\n"
        "  To perform a Check-And-Set operation, specify the -cas flag with the\n"
        "  appropriate -modify-index flag corresponding to the key you want to perform\n"
        "  the CAS operation on:\n\n"
        "      $ consul kv put -cas -modify-index=844 config/redis/maxconns 5",
        PUT_FLAGS,
        run_put,
    ),
    "delete": _kv_command(
        "delete",
        "Removes data from the KV store",
        "Usage: consul kv delete [options] KEY_OR_PREFIX\n\n"
        "  Removes the value from Consul's key-value store at the given path. If no\n"
        "  key exists at the path, no action is taken.\n\n"
        "      $ consul kv delete foo\n\n"
        "  To delete all keys which start with \"foo\", specify the -recurse option:\n\n"
        "      $ consul kv delete -recurse foo",
        DELETE_FLAGS,
        run_delete,
    ),
    "export": _kv_command(
        "export",
        "Exports a tree from the KV store as JSON",
        "Usage: consul kv export [KEY_OR_PREFIX]\n\n"
        "  Retrieves key-value pairs for the given prefix from Consul's key-value store,\n"
        "  and writes a JSON representation to stdout. This can be used with the command\n"
        '  "consul kv import" to move entire trees between Consul clusters.\n\n'
        "      $ consul kv export vault",
        (),
        run_export,
    ),
    "import": _kv_command(
        "import",
        "Imports a tree stored as JSON to the KV store",
        "Usage: consul kv import [DATA]\n\n"
        "  Imports key-value pairs to the key-value store from the JSON representation\n"
        '  generated by the "consul kv export" command.\n\n'
        '  The data can be read from a file by prefixing the filename with the "@"\n'
        "  symbol (consul kv import @filename.json), or from stdin using the \"-\" symbol\n"
        "  (cat filename.json | consul kv import -), or given as the final argument.",
        IMPORT_FLAGS,
        run_import,
    ),
}


def _kv_help(values: dict[str, Any], args: list[str]) -> int:
    """Never called: run_command prints the group's help when no subcommand matches."""
    raise AssertionError("kv has subcommands")


COMMANDS: Mapping[str, Command] = {
    "kv": Command(
        "kv",
        "Interact with the key-value store",
        "Usage: consul kv <subcommand> [options] [args]\n\n"
        "  This command has subcommands for interacting with Consul's key-value\n"
        "  store. Here are some simple examples, and more detailed examples are\n"
        "  available in the subcommands or the documentation.\n\n"
        '  Create or update the key named "redis/config/connections" with the value "5":\n\n'
        "      $ consul kv put redis/config/connections 5\n\n"
        "  Read this value back:\n\n"
        "      $ consul kv get redis/config/connections\n\n"
        "  Or get detailed key information:\n\n"
        "      $ consul kv get -detailed redis/config/connections\n\n"
        "  Finally, delete the key:\n\n"
        "      $ consul kv delete redis/config/connections\n\n"
        "  For more examples, ask for subcommand help or view the documentation.",
        (),
        _kv_help,
        subcommands=KV_SUBCOMMANDS,
    ),
}
