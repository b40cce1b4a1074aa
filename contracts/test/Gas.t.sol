// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {Fixture, MemMerkle} from "./utils/Fixtures.sol";
import {BatchBuilder, Entry} from "./utils/BatchBuilder.sol";
import {ModelRegistry} from "../src/ModelRegistry.sol";
import {InferenceRollup} from "../src/InferenceRollup.sol";
import {DisputeGame} from "../src/DisputeGame.sol";
import {OneStepVerifier} from "../src/onestep/OneStepVerifier.sol";
import {IOneStepVerifier} from "../src/interfaces/IOneStepVerifier.sol";
import {IModelRegistry} from "../src/interfaces/IModelRegistry.sol";
import {IDisputeGame, Claim, Phase, Side, StepReveal} from "../src/interfaces/IDisputeGame.sol";

/// @notice Measures `postBatch` per claim and every move of a game over a MiniLM-shaped trace
///         (236 ops, an output tree of depth 15) and writes `gas/game.json`.
/// @dev Writes the files only with `GAS_REPORT=true` (a plain `forge test` would write warm-storage
///      figures over them). Run with `--isolate`: each call the test makes is then its own transaction, so a move's
///      figure is its whole transaction (21000 + calldata + execution on cold storage). `postBatch`
///      runs one call deeper (inside `postRow`, which is the transaction): its execution is
///      measured and the transaction's 21000 and calldata (4 gas per zero byte, 16 per other byte;
///      from Prague at least 10 / 40: EIP-7623) are computed from the exact call bytes.
contract GasTest is Fixture {
    string internal json;

    // ------------------------------------------------------------ calldata accounting

    function _calldataGas(bytes memory call_) internal pure returns (uint256 gas_, uint256 tokens_) {
        uint256 zeros;
        uint256 n = call_.length;
        // Counting bytes of an in-memory array: `i < n` bounds every read.
        assembly ("memory-safe") {
            let p := add(call_, 0x20)
            for { let i := 0 } lt(i, n) { i := add(i, 1) } {
                if iszero(byte(0, mload(add(p, i)))) { zeros := add(zeros, 1) }
            }
        }
        uint256 nonZeros = n - zeros;
        gas_ = 4 * zeros + 16 * nonZeros;
        tokens_ = zeros + 4 * nonZeros;
    }

    /// @dev Batch entry `c_`: `tokens_` i32 token ids below 30522 (two zero high bytes each) as
    ///      the input `i32 [1, tokens_]`, `outNumel_` pseudo-random elements of dtype `outDtype_` as
    ///      the output `[1, outNumel_]`. The data is written a word at a time in assembly, so that
    ///      building 1000 entries stays within the test's gas.
    function _entryOf(uint256 c_, uint256 tokens_, uint8 outDtype_, uint256 outNumel_, bytes32 modelId_)
        internal
        pure
        returns (Entry memory e_)
    {
        bytes memory input = new bytes(4 * tokens_);
        uint256 outBytes = outNumel_ << (outDtype_ - 1);
        // Allocated whole words, shortened below to `outBytes` once the tail is zero again.
        bytes memory output = new bytes((outBytes + 31) & ~uint256(31));
        bytes32 requestId = keccak256(abi.encode("request", c_));
        // Every write lands inside `input` (bytes `4 * t`, `4 * t + 1` for `t < tokens_`) or in
        // a whole word of `output`.
        assembly ("memory-safe") {
            let p := add(input, 0x20)
            for { let t := 0 } lt(t, tokens_) { t := add(t, 1) } {
                mstore(0x00, c_)
                mstore(0x20, t)
                let id := add(101, mod(keccak256(0x00, 0x40), 30421))
                mstore8(add(p, mul(4, t)), and(id, 0xff))
                mstore8(add(add(p, mul(4, t)), 1), shr(8, id))
            }
            p := add(output, 0x20)
            for { let w := 0 } lt(w, mload(output)) { w := add(w, 0x20) } {
                mstore(0x00, c_)
                mstore(0x20, add(w, 0x100000000))
                mstore(add(p, w), keccak256(0x00, 0x40))
            }
            let tail := and(outBytes, 31)
            if tail {
                let last := add(p, sub(outBytes, tail))
                mstore(last, and(mload(last), not(shr(shl(3, tail), not(0)))))
            }
            mstore(output, outBytes)
        }
        e_ = Entry({
            requestId: requestId,
            modelId: modelId_,
            inputType: abi.encodePacked(uint8(3), uint8(2), uint32(1), uint32(tokens_)),
            inputData: input,
            outputType: abi.encodePacked(outDtype_, uint8(2), uint32(1), uint32(outNumel_)),
            outputData: output
        });
    }

    struct Row {
        uint256 count;
        string label;
        uint256 payloadPerClaim;
        uint256 exec;
        uint256 cdGas;
        uint256 tokens;
    }

    /// @dev The claim leaf of `entry_` ({BatchBuilder}); external so that it runs in fresh memory.
    function claimLeafOf(Entry calldata entry_) external pure returns (bytes32) {
        return BatchBuilder.leaf(BatchBuilder.claim(entry_));
    }

    /// @dev External so that each row runs in fresh memory.
    function postRow(uint256 count_, uint256 tokens_, uint8 outDtype_, uint256 outNumel_, string memory label_)
        external
        returns (string memory row_)
    {
        require(msg.sender == address(this), "self only");
        Row memory r;
        r.count = count_;
        r.label = label_;
        Entry[] memory entries = new Entry[](count_);
        for (uint256 c = 0; c < count_; ++c) {
            entries[c] = _entryOf(c, tokens_, outDtype_, outNumel_, modelId);
        }
        bytes memory data = BatchBuilder.encode(entries);
        r.payloadPerClaim = data.length / count_;
        // The claims root of {BatchBuilder.root}, each leaf built in its own call frame: the
        // memory of 1000 tensor trees in one frame would cost more than the test's gas.
        bytes32[] memory leaves = new bytes32[](count_);
        for (uint256 c = 0; c < count_; ++c) {
            leaves[c] = this.claimLeafOf(entries[c]);
        }
        bytes32 root = MemMerkle.root(leaves);
        bytes memory input = abi.encodeCall(InferenceRollup.postBatch, (root, uint32(count_), data));
        (r.cdGas, r.tokens) = _calldataGas(input);
        address target = address(rollup);
        vm.prank(sequencer);
        // The call bytes are in memory already: the gas below is the call and the execution only.
        // Assembly: Solidity's `.call(bytes)` would copy the bytes in memory first.
        bool ok;
        uint256 g = gasleft();
        assembly ("memory-safe") {
            ok := call(gas(), target, 0, add(input, 0x20), mload(input), 0, 0)
        }
        r.exec = g - gasleft();
        require(ok, "postBatch");
        row_ = _rowJson(r);
    }

    function _rowJson(Row memory r_) internal pure returns (string memory) {
        uint256 tx = 21_000 + r_.cdGas + r_.exec;
        uint256 floor = 21_000 + 10 * r_.tokens;
        uint256 prague = tx > floor ? tx : floor;
        return string.concat(
            string.concat(
                '{"batch_size":',
                vm.toString(r_.count),
                ',"payload":"',
                r_.label,
                '","payload_bytes_per_claim":',
                vm.toString(r_.payloadPerClaim),
                ',"execution_gas":',
                vm.toString(r_.exec)
            ),
            string.concat(
                ',"calldata_gas":',
                vm.toString(r_.cdGas),
                ',"tx_gas":',
                vm.toString(tx),
                ',"tx_gas_per_claim":',
                vm.toString(tx / r_.count),
                ',"tx_gas_per_claim_prague":',
                vm.toString(prague / r_.count),
                "}"
            )
        );
    }

    function test_gas_postBatch_succeeds() public {
        vm.warp(1_000_000);
        _deployDefault();
        string memory rows = "";
        uint256[3] memory sizes = [uint256(1), 100, 1000];
        for (uint256 s = 0; s < 3; ++s) {
            uint256 n = sizes[s];
            rows = string.concat(
                rows, s == 0 ? "" : ",\n    ", this.postRow(n, 1, 1, 1, "1 i32 token in, 1 i8 out (smallest)")
            );
            rows = string.concat(rows, ",\n    ", this.postRow(n, 16, 1, 384, "16 i32 tokens in, 384 i8 out"));
            rows = string.concat(rows, ",\n    ", this.postRow(n, 64, 1, 384, "64 i32 tokens in, 384 i8 out"));
            rows = string.concat(rows, ",\n    ", this.postRow(n, 64, 2, 384, "64 i32 tokens in, 384 i16 out"));
        }
        if (!vm.envOr("GAS_REPORT", false)) return;
        vm.writeFile(
            "gas/post_batch.json",
            string.concat(
                '{\n  "evm": "cancun",\n  "command": "cd contracts && GAS_REPORT=true forge test --isolate --match-path test/Gas.t.sol",\n',
                '  "note": "execution_gas: postBatch run in a fresh transaction (cold storage; includes a 2600 cold-account call the real transaction does not pay); ',
                'tx_gas = 21000 + calldata (4/16 per zero/other byte) + execution_gas; tx_gas_per_claim_prague applies the EIP-7623 floor (10 per zero byte, 40 per other byte)",\n',
                '  "rows": [\n    ',
                rows,
                "\n  ]\n}\n"
            )
        );
    }

    // ------------------------------------------------------------ a MiniLM-shaped game

    uint32 internal constant BIG_OPS = 236;
    bytes internal constant BIG_TYPE = hex"010100100000"; // i8 [2^20]: 32768 leaves, depth 15
    uint256 internal constant DEPTH = 15;
    uint256 internal constant LIE_BYTE = 700_001;
    bytes[] internal bigOps;
    bytes32[] internal bigOpHashes;
    bytes32[] internal hHonest;
    bytes32[] internal hLie;
    bytes32[16] internal zero;
    bytes32[16] internal path;
    string internal moves;
    uint256 internal total;

    function _bigOp(uint32 i_) internal pure returns (bytes memory) {
        return abi.encodePacked(
            uint8(5), int32(0), int32(1), uint32(0), int32(0), uint8(1), uint8(0), uint32(i_ - 1), BIG_TYPE
        );
    }

    function _bigTable(bytes32[] memory h_, uint256 i_) internal pure returns (bytes32[] memory t_) {
        t_ = new bytes32[](BIG_OPS + 1);
        for (uint256 j = 0; j <= i_; ++j) {
            t_[j] = h_[j];
        }
    }

    function _bigState(bytes32[] memory h_, uint256 i_) internal view returns (bytes32) {
        return keccak256(abi.encodePacked(weightsRoot, MemMerkle.root(_bigTable(h_, i_))));
    }

    /// @dev Node `index_` of `level_` of the output tree: the honest output is all zero (its tree
    ///      is the zero hashes), the liar's differs in one byte (one path of the tree).
    function _node(bool lie_, uint256 level_, uint256 index_) internal view returns (bytes32) {
        return lie_ && index_ == (LIE_BYTE / 32) >> level_ ? path[level_] : zero[level_];
    }

    function _record(string memory name_, uint256 gas_) internal {
        total += gas_;
        moves = string.concat(
            moves, bytes(moves).length == 0 ? "" : ",\n      ", '{"move":"', name_, '","gas":', vm.toString(gas_), "}"
        );
    }

    function _setUpBigGame() internal returns (uint256 batchId_, Claim memory claim_) {
        for (uint32 i = 1; i <= BIG_OPS; ++i) {
            bigOps.push(_bigOp(i));
            bigOpHashes.push(keccak256(_bigOp(i)));
        }
        bytes32 bigModel =
            registry.register(1, BIG_OPS, 1, BIG_OPS, BIG_TYPE, MemMerkle.root(bigOpHashes), weightsRoot, "");
        uint256 leaf = LIE_BYTE / 32;
        zero[0] = keccak256(abi.encodePacked(bytes32(0)));
        path[0] = keccak256(abi.encodePacked(bytes32(uint256(1) << (8 * (31 - LIE_BYTE % 32)))));
        for (uint256 d = 0; d < DEPTH; ++d) {
            zero[d + 1] = MemMerkle.pair(zero[d], zero[d]);
            path[d + 1] = (leaf >> d) & 1 == 1 ? MemMerkle.pair(zero[d], path[d]) : MemMerkle.pair(path[d], zero[d]);
        }
        // Honest: every op copies an all-zero input. The liar flips byte LIE_BYTE from op 150 on.
        bytes32 th = keccak256(abi.encodePacked(BIG_TYPE, zero[DEPTH]));
        bytes32 tl = keccak256(abi.encodePacked(BIG_TYPE, path[DEPTH]));
        for (uint256 j = 0; j <= BIG_OPS; ++j) {
            hHonest.push(th);
            hLie.push(j >= 150 ? tl : th);
        }
        claim_ = Claim({requestId: bytes32(uint256(1)), modelId: bigModel, inputHash: th, outputHash: tl});
        batchId_ = this.postBigBatch(claim_);
    }

    /// @dev Posts `claim_` with its data: 2^20 zero bytes in, the liar's output out. The root is
    ///      built from the claim's hashes (a MemMerkle build over 2 MiB would not fit the test's
    ///      gas). External so that the 4 MiB of memory do not make the moves measured later cheaper.
    function postBigBatch(Claim calldata claim_) external returns (uint256 batchId_) {
        require(msg.sender == address(this), "self only");
        bytes memory lied = new bytes(1 << 20);
        lied[LIE_BYTE] = 0x01;
        bytes memory data = BatchBuilder.encodeEntry(
            Entry(claim_.requestId, claim_.modelId, BIG_TYPE, new bytes(1 << 20), BIG_TYPE, lied)
        );
        bytes32[] memory leaves = new bytes32[](1);
        leaves[0] = _leaf(claim_);
        vm.prank(sequencer);
        batchId_ = rollup.postBatch(MemMerkle.root(leaves), 1, data);
    }

    function test_gas_gameMoves_succeeds() public {
        vm.warp(1_000_000);
        _deploy(_config(8, 3), IOneStepVerifier(address(new OneStepVerifier())));
        (uint256 batchId, Claim memory claim) = _setUpBigGame();

        vm.prank(challenger);
        uint256 g = gasleft();
        uint256 id = rollup.challenge{value: CH_BOND}(batchId, 0, claim, new bytes32[](0));
        _record("challenge (opens the game)", g - gasleft());

        bytes32 finalRoot = MemMerkle.root(_bigTable(hLie, BIG_OPS));
        bytes32[] memory sib = MemMerkle.proof(_bigTable(hLie, BIG_OPS), BIG_OPS);
        vm.prank(sequencer);
        g = gasleft();
        games.revealFinal(id, finalRoot, sib);
        _record("revealFinal", g - gasleft());

        while (games.game(id).phase == Phase.AwaitDissection) {
            DisputeGame.GameView memory v = games.game(id);
            uint64[] memory pts = games.dissectionPoints(v.lo, v.hi);
            bytes32[] memory st = new bytes32[](pts.length - 2);
            for (uint256 j = 1; j + 1 < pts.length; ++j) {
                st[j - 1] = _bigState(hLie, pts[j]);
            }
            vm.prank(sequencer);
            g = gasleft();
            games.dissect(id, st);
            _record(string.concat("dissect (", vm.toString(st.length), " states)"), g - gasleft());
            uint32 part;
            while (part + 2 < pts.length && pts[part + 1] < 150) ++part;
            vm.prank(challenger);
            g = gasleft();
            games.pick(id, part, st);
            _record("pick", g - gasleft());
        }
        require(games.game(id).hi == 150, "bisection reaches op 150");
        StepReveal memory s = StepReveal({
            prevActivationsRoot: MemMerkle.root(_bigTable(hLie, 149)),
            activationsRoot: MemMerkle.root(_bigTable(hLie, 150)),
            slotSiblings: MemMerkle.proof(_bigTable(hLie, 150), 150),
            dataRoot: path[DEPTH],
            op: bigOps[149],
            opSiblings: MemMerkle.proof(bigOpHashes, 149)
        });
        vm.prank(sequencer);
        g = gasleft();
        games.revealStep(id, s);
        _record("revealStep", g - gasleft());

        while (games.game(id).phase == Phase.AwaitNodes) {
            DisputeGame.GameView memory v = games.game(id);
            uint32 l = v.level < 3 ? v.level : 3;
            uint256 first = uint256(v.index) << l;
            bytes32[] memory nodes = new bytes32[](1 << l);
            for (uint256 k = 0; k < nodes.length; ++k) {
                nodes[k] = _node(true, v.level - l, first + k);
            }
            vm.prank(sequencer);
            g = gasleft();
            games.revealNodes(id, nodes);
            _record(string.concat("revealNodes (", vm.toString(nodes.length), " nodes)"), g - gasleft());
            uint32 child;
            while (nodes[child] == _node(false, v.level - l, first + child)) ++child;
            vm.prank(challenger);
            g = gasleft();
            games.pickNode(id, child, nodes);
            _record("pickNode", g - gasleft());
        }
        DisputeGame.GameView memory w = games.game(id);
        require(w.index == LIE_BYTE / 32, "the lying leaf");
        vm.prank(sequencer);
        g = gasleft();
        games.revealLeaf(id, bytes32(uint256(1) << (8 * (31 - LIE_BYTE % 32))));
        _record("revealLeaf", g - gasleft());

        IOneStepVerifier.Opening[] memory o = new IOneStepVerifier.Opening[](1);
        {
            IOneStepVerifier.LeafRange[] memory r = new IOneStepVerifier.LeafRange[](1);
            bytes32[] memory one = new bytes32[](1);
            bytes32[] memory leafSib = new bytes32[](DEPTH);
            for (uint256 d = 0; d < DEPTH; ++d) {
                leafSib[d] = zero[d];
            }
            r[0] = IOneStepVerifier.LeafRange({start: w.index, leaves: one});
            o[0] = IOneStepVerifier.Opening({
                tensorType: BIG_TYPE,
                dataRoot: zero[DEPTH],
                membership: MemMerkle.proof(_bigTable(hHonest, 149), 149),
                ranges: r,
                siblings: leafSib
            });
        }
        vm.prank(challenger);
        g = gasleft();
        games.oneStep(id, uint32(LIE_BYTE % 32), bigOps[149], o);
        _record("oneStep (requantize, one i8 leaf)", g - gasleft());
        require(games.game(id).winner == Side.Challenger, "the lie loses");

        vm.prank(challenger);
        g = gasleft();
        games.withdraw();
        _record("withdraw", g - gasleft());

        if (!vm.envOr("GAS_REPORT", false)) return;
        vm.writeFile(
            "gas/game.json",
            string.concat(
                '{\n  "evm": "cancun",\n  "command": "cd contracts && GAS_REPORT=true forge test --isolate --match-path test/Gas.t.sol",\n',
                '  "note": "gas of each move as its own transaction (forge --isolate): 21000 + calldata + execution with cold storage",\n',
                '  "game": {\n    "model": "236 ops (MiniLM-L6 at 128 tokens), output i8 [2^20]: data tree depth 15",\n',
                '    "degree": 8,\n    "tensor_levels": 3,\n    "moves": [\n      ',
                moves,
                '\n    ],\n    "total_gas": ',
                vm.toString(total),
                "\n  },\n",
                '  "post_batch": "see gas/post_batch.json"\n}\n'
            )
        );
    }
}
