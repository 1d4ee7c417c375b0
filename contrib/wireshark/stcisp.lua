-- SPDX-License-Identifier: LGPL-2.1-or-later
--
-- stcisp.lua: a Wireshark/tshark dissector for ISP over CAN, the protocol
-- of docs/protocol.md (STC32G boards, stcispd, stcisp-sim).
--
-- Every request (ID 0x1A......) and reply (ID 0x1B......) of both forms,
-- extended (nodes 1-254) and legacy (node 0): the command, the node, the
-- flash offset and its logical address (offset 0x11000 = FF:1000), flags,
-- status names, INFO, IDENTIFY's IDENTITY and ABOUT, and expert info for
-- refusals, failures and malformed frames.
--
-- It registers as a heuristic dissector of Wireshark's SocketCAN
-- dissector ("can"), so a capture taken with `dumpcap -i can0` decodes
-- with no setup. Install: copy this file into a Lua plugin directory
-- (contrib/wireshark/README.md); try: tshark -X lua_script:stcisp.lua.
--
-- The codec it mirrors is lib/isp-frame.c; the field names are listed in
-- contrib/wireshark/README.md. Written for Wireshark 4.0 (Debian 12).

local isp = Proto("stcisp", "STC32G ISP over CAN")

local FLASH_SIZE = 0x20000
local SECTOR_SIZE = 0x200
local ISP_AREA_START = 0x10000
local ISP_AREA_END = 0x11000
local ENTRY_OFFSET = 0x11000
local LOGICAL_BASE = 0xFE0000
local DFU_MAGIC = 0x12ABCD34

local CMD = { CONNECT = 0, READ = 1, PROGRAM = 2, ERASE = 3, REBOOT = 4, CRC = 5, IDENTIFY = 6, ENTER_ISP = 7 }
local cmd_names = {
        [0] = "CONNECT", [1] = "READ", [2] = "PROGRAM", [3] = "ERASE",
        [4] = "REBOOT", [5] = "CRC", [6] = "IDENTIFY", [7] = "ENTER_ISP",
}
-- docs/protocol.md section 5; the short names are stcisp.status.name
local status_text = {
        [0] = "ok",
        [1] = "outside the allowed range",
        [2] = "write failed",
        [3] = "bad length or argument",
        [4] = "reserved",
        [5] = "no valid application",
}
local status_short = { [0] = "OK", [1] = "RANGE", [2] = "WRITE_FAILED", [3] = "BAD_ARGUMENT", [5] = "NO_APP" }
local variant_names = { [0] = "IDENTITY", [1] = "ABOUT" }
local kind_names = { [0] = "request", [1] = "reply" }

local F = {
        kind      = ProtoField.uint8("stcisp.kind", "Direction", base.DEC, kind_names),
        cmd       = ProtoField.uint8("stcisp.cmd", "Command", base.DEC, cmd_names),
        command   = ProtoField.string("stcisp.command", "Command name"),
        form      = ProtoField.string("stcisp.form", "Form"),
        arg       = ProtoField.uint32("stcisp.arg", "ID argument", base.HEX),
        node      = ProtoField.uint8("stcisp.node", "Node"),
        target    = ProtoField.uint8("stcisp.target", "Target", base.DEC,
                                     { [0] = "0 (legacy / the only node)", [255] = "255 (all nodes)" }),
        offset    = ProtoField.uint32("stcisp.offset", "Flash offset", base.HEX),
        address   = ProtoField.string("stcisp.address", "Logical address"),
        length    = ProtoField.uint32("stcisp.length", "Length", base.DEC),
        count     = ProtoField.uint8("stcisp.erase.count", "Sector count"),
        erase_all = ProtoField.bool("stcisp.erase.all", "Whole application area"),
        data      = ProtoField.bytes("stcisp.data", "Data"),
        payload   = ProtoField.bytes("stcisp.payload", "CAN data field"),
        commit    = ProtoField.bool("stcisp.commit", "Commit (entry opcode at FF:1000)"),
        flags     = ProtoField.uint8("stcisp.flags", "Flags", base.HEX),
        flag_join = ProtoField.bool("stcisp.flags.join", "JOIN", 8, nil, 0x01),
        flag_quiet = ProtoField.bool("stcisp.flags.quiet", "QUIET", 8, nil, 0x02),
        flag_echo = ProtoField.bool("stcisp.flags.echo", "ECHO", 8, nil, 0x04),
        flag_rsvd = ProtoField.uint8("stcisp.flags.reserved", "Reserved", base.HEX, nil, 0xF8),
        status    = ProtoField.uint8("stcisp.status", "Status", base.DEC, status_text),
        status_name = ProtoField.string("stcisp.status.name", "Status name"),
        crc       = ProtoField.uint32("stcisp.crc", "CRC-32", base.HEX),
        magic     = ProtoField.uint32("stcisp.magic", "DfuFlag value", base.HEX),
        uid       = ProtoField.bytes("stcisp.uid", "Chip UID (first 4 bytes)"),
        info_version = ProtoField.uint8("stcisp.info.version", "Protocol version"),
        info_caps = ProtoField.uint8("stcisp.info.caps", "Capabilities", base.HEX),
        cap_crc   = ProtoField.bool("stcisp.info.caps.crc", "CRC (cmd 5)", 8, nil, 0x01),
        cap_erase = ProtoField.bool("stcisp.info.caps.sector_erase", "Sector-range ERASE", 8, nil, 0x02),
        cap_quiet = ProtoField.bool("stcisp.info.caps.quiet", "QUIET multicast", 8, nil, 0x04),
        cap_echo  = ProtoField.bool("stcisp.info.caps.echo", "ECHO (CRC and ERASE replies repeat the start offset)", 8, nil, 0x08),
        echo      = ProtoField.uint24("stcisp.echo", "Echoed start offset", base.HEX),
        info_fw   = ProtoField.uint8("stcisp.info.firmware", "ISP firmware version"),
        info_depth = ProtoField.uint8("stcisp.info.depth", "Receive depth"),
        variant   = ProtoField.uint8("stcisp.identify.variant", "IDENTIFY variant", base.DEC, variant_names),
        image_crc = ProtoField.uint32("stcisp.identify.image_crc", "Image CRC-32", base.HEX),
        about_version = ProtoField.uint8("stcisp.about.version", "IDENTIFY version"),
        about_caps = ProtoField.uint8("stcisp.about.caps", "Application capabilities", base.HEX),
        acap_enter = ProtoField.bool("stcisp.about.caps.enter_isp", "ENTER_ISP", 8, nil, 0x01),
        acap_ident = ProtoField.bool("stcisp.about.caps.identity", "IDENTITY", 8, nil, 0x02),
        about_helper = ProtoField.uint8("stcisp.about.helper", "Helper version"),
        about_flags = ProtoField.uint8("stcisp.about.flags", "Application flags", base.HEX),
        aflag_ready = ProtoField.bool("stcisp.about.flags.crc_ready", "Image CRC computed", 8, nil, 0x01),
        app_version = ProtoField.uint32("stcisp.about.app_version", "Application version", base.HEX),
        request_in = ProtoField.framenum("stcisp.request_in", "Request in"),
        response_in = ProtoField.framenum("stcisp.response_in", "Reply in"),
}
local field_list = {}
for _, f in pairs(F) do field_list[#field_list + 1] = f end
isp.fields = field_list

local E = {
        refused = ProtoExpert.new("stcisp.expert.refused", "Request refused by the node",
                                  expert.group.RESPONSE_CODE, expert.severity.WARN),
        failed = ProtoExpert.new("stcisp.expert.failed", "Request failed on the node",
                                 expert.group.RESPONSE_CODE, expert.severity.ERROR),
        malformed = ProtoExpert.new("stcisp.expert.malformed", "Malformed ISP frame",
                                    expert.group.MALFORMED, expert.severity.ERROR),
        range = ProtoExpert.new("stcisp.expert.range", "Request outside the writable or readable range",
                                expert.group.PROTOCOL, expert.severity.WARN),
        legacy = ProtoExpert.new("stcisp.expert.legacy", "Reply from a legacy node",
                                 expert.group.PROTOCOL, expert.severity.NOTE),
        commit = ProtoExpert.new("stcisp.expert.commit", "Commit: the entry opcode is written",
                                 expert.group.SEQUENCE, expert.severity.CHAT),
        unknown = ProtoExpert.new("stcisp.expert.unknown_cmd", "Unknown ISP command",
                                  expert.group.UNDECODED, expert.severity.WARN),
}
isp.experts = { E.refused, E.failed, E.malformed, E.range, E.legacy, E.commit, E.unknown }

-- What the SocketCAN dissector found: the heuristic sees only the data.
local f_can_id = Field.new("can.id")
local f_can_xtd = Field.new("can.flags.xtd")
local f_can_rtr = Field.new("can.flags.rtr")
local f_can_err = Field.new("can.flags.err")
local f_canfd = Field.new("canfd")
local f_iface = Field.new("frame.interface_id")

local function last(extractor)
        local all = { extractor() }
        return all[#all]
end

local function address(offset)
        local logical = LOGICAL_BASE + offset
        return string.format("%02X:%04X", bit.band(bit.rshift(logical, 16), 0xFF), bit.band(logical, 0xFFFF))
end

local function where(offset)
        return string.format("%s (0x%05X)", address(offset), offset)
end

-- [offset, offset + len) lies inside the 128 KiB flash
local function in_flash(offset, len)
        return offset < FLASH_SIZE and len <= FLASH_SIZE - offset
end

local function touches_isp(offset, len)
        return offset < ISP_AREA_END and offset + len > ISP_AREA_START
end

---------------------------------------------------------------------------
-- Matching replies to requests, the first time a frame is decoded; the
-- result is kept per frame so that Wireshark's re-dissections show the
-- same thing. (Not on pinfo.visited: a pass without a protocol tree, as
-- tshark -2 makes first, has no CAN fields, so nothing is decoded there.)
--
-- A node answers its requests in order (protocol.md 4), so a reply from
-- node n to command c belongs to the oldest request of c that node n has
-- not answered yet, counting only requests sent after n's last answer to
-- c and after n's last INFO (a CONNECT starts a node's selection).
-- PROGRAM acks echo their offset and are matched by it. After a lost
-- frame a match can be off by one until the node's next CONNECT.

local state
local done             -- frame number -> true once decoded
local matched          -- frame number -> request record (replies)
local answered         -- frame number of a request -> first reply's frame number

local function reset_state()
        state = {}
        done = {}
        matched = {}
        answered = {}
end
reset_state()

function isp.init()
        reset_state()
end

local function line_state(iface)
        local s = state[iface]
        if not s then
                s = { requests = {}, next = {} }
                for c = 0, 15 do s.requests[c] = {} end
                state[iface] = s
        end
        return s
end

local function node_next(s, node)
        local n = s.next[node]
        if not n then
                n = {}
                s.next[node] = n
        end
        return n
end

local function remember_request(iface, req)
        local list = line_state(iface).requests[req.cmd]
        list[#list + 1] = req
end

-- does request `req` reach node `node`?
local function addressed(req, node)
        if req.target == nil then
                return true
        end
        return req.target == node or req.target == 0xFF or (req.cmd == CMD.CONNECT and req.target == 0)
end

local function match_reply(iface, cmd, node, variant, echo)
        local s = line_state(iface)
        local list = s.requests[cmd]
        local nn = node_next(s, node)
        local found, idx

        if cmd == CMD.PROGRAM and echo ~= nil then
                for i = #list, 1, -1 do
                        if list[i].offset == echo then
                                found, idx = list[i], i
                                break
                        end
                end
        else
                -- a node's first answer: to the latest request that reached it
                if nn[cmd] then
                        for i = nn[cmd], #list do
                                local r = list[i]
                                if addressed(r, node) and (variant == nil or r.variant == variant) then
                                        found, idx = r, i
                                        break
                                end
                        end
                end
                if not found then
                        -- a second answer to the same request (resent, or several
                        -- replies to one DISCOVER): the latest one that fits
                        for i = #list, 1, -1 do
                                local r = list[i]
                                if addressed(r, node) and (variant == nil or r.variant == variant) then
                                        found, idx = r, i
                                        break
                                end
                        end
                end
        end
        if found then
                nn[cmd] = idx + 1
        end
        if cmd == CMD.CONNECT or cmd == CMD.ENTER_ISP then
                -- INFO or ANNOUNCE: the node's selection starts (or ends) here
                for c = 1, 5 do
                        nn[c] = #s.requests[c] + 1
                end
        end
        if cmd == CMD.ENTER_ISP or cmd == CMD.REBOOT then
                -- its ISP or its application (re)starts: nothing older is answered
                nn[CMD.IDENTIFY] = #s.requests[CMD.IDENTIFY] + 1
                nn[CMD.CONNECT] = #s.requests[CMD.CONNECT] + 1
        end
        return found
end

---------------------------------------------------------------------------
-- Tree helpers

local function gen(tree, field, value, label)
        local item
        if label then
                item = tree:add(field, value, label)
        else
                item = tree:add(field, value)
        end
        item:set_generated()
        return item
end

local function add_offset(tree, offset, generated)
        local a = tree:add(F.offset, offset)
        local b = tree:add(F.address, address(offset))
        if generated then
                a:set_generated()
                b:set_generated()
        end
end

local function add_status(tree, pinfo, tvb, node, cmdname, status)
        local item = tree:add(F.status, tvb(0, 1))
        gen(tree, F.status_name, status_short[status] or "UNKNOWN")
        if status == 0 then
                return "ok"
        end
        local text = status_text[status]
        if status == 2 then
                item:add_proto_expert_info(E.failed, string.format("%s failed on node %d: status 2, %s",
                                                                   cmdname, node, text))
        elseif status == 1 or status == 3 or status == 5 then
                item:add_proto_expert_info(E.refused, string.format("%s refused by node %d: status %d, %s",
                                                                    cmdname, node, status, text))
        else
                item:add_proto_expert_info(E.failed, string.format("%s: node %d sent status %d, which the protocol does not define",
                                                                   cmdname, node, status))
                text = "unknown status"
        end
        return string.format("status %d, %s", status, text)
end

local function malformed(tree, text)
        tree:add_proto_expert_info(E.malformed, text)
        return " [malformed: " .. text .. "]"
end

-- ECHO: the start offset a CRC or ERASE reply repeats, against the request
-- this dissector paired it with (if any).
local function echo_check(tree, range, want)
        local echo = range:uint()
        local item = tree:add(F.echo, range)
        if want and echo ~= want then
                item:add_proto_expert_info(E.malformed, string.format(
                        "echoes 0x%06X, the request in this capture started at 0x%06X: it answers another request", echo, want))
                return string.format(" [echoes 0x%06X, not 0x%06X]", echo, want)
        end
        return ""
end

local function add_info(tree, tvb)
        tree:add(F.info_version, tvb(0, 1))
        local caps = tree:add(F.info_caps, tvb(1, 1))
        caps:add(F.cap_crc, tvb(1, 1))
        caps:add(F.cap_erase, tvb(1, 1))
        caps:add(F.cap_quiet, tvb(1, 1))
        caps:add(F.cap_echo, tvb(1, 1))
        tree:add(F.info_fw, tvb(2, 1))
        tree:add(F.info_depth, tvb(3, 1))
        tree:add(F.uid, tvb(4, 4))
        local c = tvb(1, 1):uint()
        local names = {}
        if bit.band(c, 1) ~= 0 then names[#names + 1] = "CRC" end
        if bit.band(c, 2) ~= 0 then names[#names + 1] = "ERASE" end
        if bit.band(c, 4) ~= 0 then names[#names + 1] = "QUIET" end
        if bit.band(c, 8) ~= 0 then names[#names + 1] = "ECHO" end
        return string.format("v%d caps %s fw %d depth %d uid %s", tvb(0, 1):uint(),
                             #names > 0 and table.concat(names, ",") or "none",
                             tvb(2, 1):uint(), tvb(3, 1):uint(), tostring(tvb(4, 4):bytes()))
end

---------------------------------------------------------------------------
-- Requests (0x1A)

local function dissect_request(tvb, pinfo, tree, cmd, arg, iface)
        local dlc = tvb:len()
        local name = cmd_names[cmd]
        local text
        local req = { cmd = cmd, frame = pinfo.number }

        local function want_dlc(ok, expected)
                if not ok then
                        text = (text or "") .. malformed(tree, string.format("%s with DLC %d, expected %s", name, dlc, expected))
                end
                return ok
        end
        local function range_warning(offset, len, what)
                if not in_flash(offset, len) then
                        tree:add_proto_expert_info(E.range, string.format("%s reaches past the flash end (0x1FFFF): the node refuses it with status 1", what))
                elseif what ~= "READ" and what ~= "CRC" and touches_isp(offset, len) then
                        tree:add_proto_expert_info(E.range, string.format("%s touches the ISP area FF:0000-FF:0FFF: the node refuses it with status 1", what))
                end
        end
        local function targeted()
                local target = bit.band(arg, 0xFF)
                gen(tree, F.target, target)
                if target >= 1 and target <= 254 then
                        gen(tree, F.node, target)
                end
                if arg > 0xFF then
                        text = (text or "") .. malformed(tree, string.format("ID bits 19..8 are not zero (0x%05X): every node ignores it", arg))
                end
                req.target = target
                return target
        end
        local function target_text(target)
                if target == 0xFF then return "all" end
                return "node " .. target
        end

        if cmd == CMD.CONNECT then
                local target = targeted()
                if target == 0xFF then
                        name = "DISCOVER"
                        text = "DISCOVER" .. (text or "")
                elseif target == 0 then
                        gen(tree, F.form, "legacy")
                        text = "CONNECT (legacy: any node)" .. (text or "")
                else
                        text = "CONNECT " .. target_text(target) .. (text or "")
                end
                if want_dlc(dlc <= 1, "0 or 1") and dlc == 1 then
                        local fl = tree:add(F.flags, tvb(0, 1))
                        fl:add(F.flag_join, tvb(0, 1))
                        fl:add(F.flag_quiet, tvb(0, 1))
                        fl:add(F.flag_echo, tvb(0, 1))
                        fl:add(F.flag_rsvd, tvb(0, 1))
                        local v = tvb(0, 1):uint()
                        local names = {}
                        if bit.band(v, 1) ~= 0 then names[#names + 1] = "JOIN" end
                        if bit.band(v, 2) ~= 0 then names[#names + 1] = "QUIET" end
                        if bit.band(v, 4) ~= 0 then names[#names + 1] = "ECHO" end
                        if #names > 0 then
                                text = text .. " " .. table.concat(names, "|")
                        end
                end
        elseif cmd == CMD.READ then
                req.offset = arg
                add_offset(tree, arg, true)
                gen(tree, F.length, 8)
                text = "READ " .. where(arg)
                range_warning(arg, 8, "READ")
                want_dlc(dlc == 0, "0")
        elseif cmd == CMD.PROGRAM then
                req.offset = arg
                add_offset(tree, arg, true)
                text = string.format("PROGRAM %s, %d byte%s", where(arg), dlc, dlc == 1 and "" or "s")
                if want_dlc(dlc >= 1, "1-8") then
                        gen(tree, F.length, dlc)
                        tree:add(F.data, tvb(0, dlc))
                        range_warning(arg, dlc, "PROGRAM")
                        if arg == ENTRY_OFFSET then
                                local c = tree:add(F.commit, true)
                                c:set_generated()
                                if dlc == 1 and tvb(0, 1):uint() == 0x02 then
                                        c:add_proto_expert_info(E.commit, "Commit: the LJMP opcode at FF:1000 makes the application bootable")
                                        text = text .. " [commit]"
                                else
                                        c:add_proto_expert_info(E.commit, "The entry opcode is written together with other bytes (protocol.md 9 writes it alone)")
                                        text = text .. " [entry]"
                                end
                        elseif arg > ENTRY_OFFSET and arg < ENTRY_OFFSET + 3 then
                                text = text .. " [entry target]"
                        end
                end
        elseif cmd == CMD.ERASE then
                if arg ~= 0 then
                        text = malformed(tree, string.format("ERASE with ID argument 0x%05X (must be 0)", arg))
                end
                if dlc == 0 then
                        req.erase_all = true
                        gen(tree, F.erase_all, true)
                        text = "ERASE all" .. (text or "")
                elseif want_dlc(dlc == 4, "0 or 4") then
                        local offset = tvb(0, 3):uint()
                        local count = tvb(3, 1):uint()
                        req.offset = offset
                        req.length = count * SECTOR_SIZE
                        tree:add(F.offset, tvb(0, 3))
                        gen(tree, F.address, address(offset))
                        tree:add(F.count, tvb(3, 1))
                        gen(tree, F.length, count * SECTOR_SIZE)
                        text = string.format("ERASE %s, %d sector%s", where(offset), count, count == 1 and "" or "s") .. (text or "")
                        if count == 0 or offset % SECTOR_SIZE ~= 0 then
                                text = text .. malformed(tree, "ERASE with a count of 0 or an unaligned start: the node refuses it with status 3")
                        else
                                range_warning(offset, count * SECTOR_SIZE, "ERASE")
                        end
                end
        elseif cmd == CMD.REBOOT then
                text = "REBOOT"
                if arg ~= 0 then
                        text = text .. malformed(tree, string.format("REBOOT with ID argument 0x%05X (must be 0)", arg))
                end
                want_dlc(dlc == 0, "0")
        elseif cmd == CMD.CRC then
                text = "CRC"
                if arg ~= 0 then
                        text = text .. malformed(tree, string.format("CRC with ID argument 0x%05X (must be 0)", arg))
                end
                if want_dlc(dlc == 6, "6") then
                        local offset = tvb(0, 3):uint()
                        local length = tvb(3, 3):uint()
                        req.offset = offset
                        req.length = length
                        tree:add(F.offset, tvb(0, 3))
                        gen(tree, F.address, address(offset))
                        tree:add(F.length, tvb(3, 3))
                        text = string.format("CRC %s, length 0x%05X", where(offset), length)
                        range_warning(offset, length, "CRC")
                end
        elseif cmd == CMD.IDENTIFY then
                local target = targeted()
                text = "IDENTIFY " .. target_text(target) .. (text or "")
                if target == 0 then
                        text = text .. malformed(tree, "IDENTIFY to target 0: applications ignore it")
                end
                if want_dlc(dlc == 1, "1") then
                        local v = tvb(0, 1):uint()
                        req.variant = v
                        tree:add(F.variant, tvb(0, 1))
                        text = text .. " " .. (variant_names[v] or ("variant " .. v .. " (reserved: no reply)"))
                end
        elseif cmd == CMD.ENTER_ISP then
                local target = targeted()
                text = "ENTER_ISP " .. target_text(target) .. (text or "")
                if want_dlc(dlc == 4, "4") then
                        tree:add(F.magic, tvb(0, 4))
                        if tvb(0, 4):uint() ~= DFU_MAGIC then
                                text = text .. malformed(tree, "ENTER_ISP without the DfuFlag value 12 AB CD 34: applications ignore it")
                        end
                end
        else
                name = "UNKNOWN"
                text = string.format("unknown command %d", cmd)
                tree:add_proto_expert_info(E.unknown, string.format("Command %d is not defined (protocol.md 3): nodes ignore it", cmd))
                if dlc > 0 then
                        tree:add(F.data, tvb(0, dlc))
                end
        end

        req.name = name
        if not done[pinfo.number] then
                remember_request(iface, req)
        end
        local reply = answered[pinfo.number]
        if reply then
                gen(tree, F.response_in, reply)
        end
        return name, text
end

---------------------------------------------------------------------------
-- Replies (0x1B)

local function dissect_reply(tvb, pinfo, tree, cmd, id, iface)
        local dlc = tvb:len()
        local node = bit.band(id, 0xFF)
        local variant = bit.band(bit.rshift(id, 8), 0xFF)
        local name = cmd_names[cmd] or "UNKNOWN"
        local text
        local bad = ""

        tree:add(F.node, node):set_generated()
        if cmd == CMD.IDENTIFY then
                if bit.band(id, 0xF0000) ~= 0 then
                        bad = bad .. malformed(tree, "reply ID bits 19..16 are not zero: hosts ignore it")
                end
        elseif bit.band(id, 0xFFF00) ~= 0 then
                bad = bad .. malformed(tree, "reply ID bits 19..8 are not zero: hosts ignore it")
        end
        if node == 0xFF then
                bad = bad .. malformed(tree, "node 255 is not a valid node id")
        end

        local legacy = node == 0 and (cmd == CMD.CONNECT or cmd == CMD.PROGRAM or cmd == CMD.ERASE or
                                      cmd == CMD.REBOOT or cmd == CMD.READ)
        gen(tree, F.form, legacy and "legacy" or "extended")
        if legacy then
                tree:add_proto_expert_info(E.legacy, "Reply from a legacy node (node 0): it must be the only node in ISP on this bus (protocol.md 6)")
        end

        -- the request it answers
        local req
        if done[pinfo.number] then
                req = matched[pinfo.number]
        elseif bad == "" then
                -- (a host ignores a malformed reply ID: it answers nothing)
                local echo
                if cmd == CMD.PROGRAM and not legacy and dlc == 4 then
                        echo = tvb(1, 3):uint()
                end
                req = match_reply(iface, cmd, node, cmd == CMD.IDENTIFY and variant or nil, echo)
                matched[pinfo.number] = req
                if req and not answered[req.frame] then
                        answered[req.frame] = pinfo.number
                end
        end
        if req then
                gen(tree, F.request_in, req.frame)
        end

        local who = legacy and "legacy node" or ("node " .. node)

        if legacy and cmd ~= CMD.READ then
                if cmd == CMD.PROGRAM then
                        if req and req.offset then add_offset(tree, req.offset, true) end
                        gen(tree, F.status, 0, "Status: 0 (implied: a legacy node acks success only)")
                        gen(tree, F.status_name, "OK")
                        text = "PROGRAM ack, legacy node" .. (req and req.offset and (" " .. where(req.offset)) or "")
                elseif cmd == CMD.ERASE then
                        gen(tree, F.status, 0, "Status: 0 (implied: a legacy node answers when the erase is done)")
                        gen(tree, F.status_name, "OK")
                        text = "ERASE done, legacy node"
                elseif cmd == CMD.CONNECT then
                        name = req and req.name or "CONNECT"
                        text = name .. " reply, legacy node"
                else
                        text = "REBOOT reply, legacy node"
                end
                if dlc > 0 then
                        tree:add(F.data, tvb(0, dlc)):append_text(" (ignored: a legacy reply has no payload)")
                end
                return name, text .. bad
        end

        if cmd == CMD.CONNECT or cmd == CMD.ENTER_ISP then
                if cmd == CMD.ENTER_ISP then
                        name = "ANNOUNCE"
                elseif req then
                        name = req.name
                end
                if dlc ~= 8 then
                        return name, string.format("%s %s", cmd == CMD.ENTER_ISP and "ANNOUNCE" or "INFO", who) ..
                               malformed(tree, string.format("INFO with DLC %d, expected 8: the host does not use this node", dlc)) .. bad
                end
                local info = add_info(tree, tvb)
                text = string.format("%s %s: %s", cmd == CMD.ENTER_ISP and "ANNOUNCE" or "INFO", who, info)
                if cmd == CMD.CONNECT and req then
                        text = text .. " (" .. name .. ")"
                end
        elseif cmd == CMD.READ then
                if req and req.offset then
                        add_offset(tree, req.offset, true)
                end
                local at = req and req.offset and (" " .. where(req.offset)) or ""
                if dlc == 8 then
                        tree:add(F.data, tvb(0, 8))
                        text = string.format("READ reply %s%s: %s", who, at, tostring(tvb(0, 8):bytes()))
                elseif dlc == 1 and not legacy and tvb(0, 1):uint() ~= 0 then
                        text = string.format("READ reply %s%s: %s", who, at,
                                             add_status(tree, pinfo, tvb, node, "READ", tvb(0, 1):uint()))
                else
                        text = string.format("READ reply %s", who) .. malformed(tree, string.format("READ reply with DLC %d, expected 8 (or 1 with a non-zero status)", dlc))
                end
        elseif cmd == CMD.PROGRAM then
                if dlc ~= 4 then
                        return name, "PROGRAM ack " .. who .. malformed(tree, string.format("PROGRAM ack with DLC %d, expected 4", dlc)) .. bad
                end
                local echo = tvb(1, 3):uint()
                tree:add(F.offset, tvb(1, 3))
                gen(tree, F.address, address(echo))
                local st = add_status(tree, pinfo, tvb, node, "PROGRAM", tvb(0, 1):uint())
                text = string.format("PROGRAM ack %s %s: %s", who, where(echo), st)
                if req and req.offset == ENTRY_OFFSET and tvb(0, 1):uint() == 0 then
                        text = text .. " [commit]"
                end
        elseif cmd == CMD.ERASE or cmd == CMD.REBOOT then
                if req and req.offset then
                        add_offset(tree, req.offset, true)
                        gen(tree, F.length, req.length)
                elseif req and req.erase_all then
                        gen(tree, F.erase_all, true)
                end
                -- ERASE of a node with ECHO: DLC 4, the start offset after the status
                if dlc ~= 1 and not (cmd == CMD.ERASE and dlc == 4) then
                        return name, name .. " reply " .. who .. malformed(tree, string.format("%s reply with DLC %d, expected 1%s", name, dlc, cmd == CMD.ERASE and " (or 4 with ECHO)" or "")) .. bad
                end
                local what = name
                if cmd == CMD.ERASE then
                        what = req and (req.erase_all and "ERASE all" or (req.offset and ("ERASE " .. where(req.offset)))) or "ERASE"
                end
                text = string.format("%s reply %s: %s", what, who, add_status(tree, pinfo, tvb, node, name, tvb(0, 1):uint()))
                if dlc == 4 then
                        text = text .. echo_check(tree, tvb(1, 3), req and (req.erase_all and 0xFFFFFF or req.offset))
                end
        elseif cmd == CMD.CRC then
                if req and req.offset then
                        add_offset(tree, req.offset, true)
                        gen(tree, F.length, req.length)
                end
                if node == 0 then
                        bad = bad .. malformed(tree, "a legacy node has no CRC command")
                end
                -- DLC 8 with ECHO: the start offset after the CRC
                if dlc ~= 5 and dlc ~= 8 then
                        return name, "CRC reply " .. who .. malformed(tree, string.format("CRC reply with DLC %d, expected 5 (or 8 with ECHO)", dlc)) .. bad
                end
                local status = tvb(0, 1):uint()
                local st = add_status(tree, pinfo, tvb, node, "CRC", status)
                tree:add(F.crc, tvb(1, 4))
                local at = req and req.offset and string.format(" %s+0x%05X", where(req.offset), req.length) or ""
                if status == 0 then
                        text = string.format("CRC reply %s%s: 0x%08X", who, at, tvb(1, 4):uint())
                else
                        text = string.format("CRC reply %s%s: %s", who, at, st)
                end
                if dlc == 8 then
                        text = text .. echo_check(tree, tvb(5, 3), req and req.offset)
                end
        elseif cmd == CMD.IDENTIFY then
                tree:add(F.variant, variant):set_generated()
                if node == 0 then
                        bad = bad .. malformed(tree, "IDENTIFY answered by node 0: only applications with a node id answer it")
                end
                if dlc ~= 8 then
                        return name, "IDENTIFY reply " .. who .. malformed(tree, string.format("IDENTIFY reply with DLC %d, expected 8", dlc)) .. bad
                end
                if variant == 0 then
                        tree:add(F.uid, tvb(0, 4))
                        tree:add(F.image_crc, tvb(4, 4))
                        text = string.format("IDENTITY %s: uid %s image CRC 0x%08X", who, tostring(tvb(0, 4):bytes()), tvb(4, 4):uint())
                elseif variant == 1 then
                        tree:add(F.about_version, tvb(0, 1))
                        local c = tree:add(F.about_caps, tvb(1, 1))
                        c:add(F.acap_enter, tvb(1, 1))
                        c:add(F.acap_ident, tvb(1, 1))
                        tree:add(F.about_helper, tvb(2, 1))
                        local fl = tree:add(F.about_flags, tvb(3, 1))
                        fl:add(F.aflag_ready, tvb(3, 1))
                        tree:add(F.app_version, tvb(4, 4))
                        text = string.format("ABOUT %s: version %d caps 0x%02X helper %d flags 0x%02X application version 0x%08X",
                                             who, tvb(0, 1):uint(), tvb(1, 1):uint(), tvb(2, 1):uint(), tvb(3, 1):uint(), tvb(4, 4):uint())
                else
                        tree:add(F.data, tvb(0, 8))
                        text = string.format("IDENTIFY reply %s, variant %d", who, variant) ..
                               malformed(tree, string.format("IDENTIFY variant %d is reserved: hosts ignore it", variant))
                end
        else
                name = "UNKNOWN"
                text = string.format("reply to unknown command %d from %s", cmd, who)
                tree:add_proto_expert_info(E.unknown, string.format("Command %d is not defined (protocol.md 3)", cmd))
                if dlc > 0 then
                        tree:add(F.data, tvb(0, dlc))
                end
        end
        return name, text .. bad
end

---------------------------------------------------------------------------

local function heuristic(tvb, pinfo, tree)
        -- ISP traffic: classical CAN, 29-bit ID, data frame (protocol.md 2.1)
        if last(f_canfd) then return false end
        local xtd = last(f_can_xtd)
        if not xtd or not xtd.value then return false end
        local rtr = last(f_can_rtr)
        if rtr and rtr.value then return false end
        local err = last(f_can_err)
        if err and err.value then return false end
        local idf = last(f_can_id)
        if not idf then return false end
        local id = bit.band(idf.value, 0x1FFFFFFF)
        local prefix = bit.rshift(id, 24)
        if prefix ~= 0x1A and prefix ~= 0x1B then return false end
        if tvb:len() > 8 then return false end

        local cmd = bit.band(bit.rshift(id, 20), 0xF)
        local arg = bit.band(id, 0xFFFFF)
        local ifv = last(f_iface)
        local iface = ifv and ifv.value or 0

        local tree_item = tree:add(isp, tvb())
        tree_item:add(F.kind, prefix - 0x1A):set_generated()
        tree_item:add(F.cmd, cmd):set_generated()
        tree_item:add(F.arg, arg):set_generated()
        if tvb:len() > 0 then
                tree_item:add(F.payload, tvb()):set_hidden()
        end

        local name, text
        if prefix == 0x1A then
                name, text = dissect_request(tvb, pinfo, tree_item, cmd, arg, iface)
        else
                name, text = dissect_reply(tvb, pinfo, tree_item, cmd, id, iface)
        end
        -- the command's name as this frame uses it (DISCOVER, ANNOUNCE ...)
        tree_item:add(F.command, name):set_generated()
        tree_item:append_text(": " .. text)
        pinfo.cols.protocol = "STCISP"
        pinfo.cols.info = text
        done[pinfo.number] = true
        return true
end

isp:register_heuristic("can", heuristic)
