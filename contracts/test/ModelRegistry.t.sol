// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {Test} from "./utils/Test.sol";
import {ModelRegistry} from "../src/ModelRegistry.sol";
import {IModelRegistry, Model} from "../src/interfaces/IModelRegistry.sol";
import "../src/Errors.sol" as E;

/// @notice Registration: ids computed on-chain as `inference/src/program.rs` computes them.
contract ModelRegistryTest is Test {
    ModelRegistry internal registry;
    bytes internal constant INPUT_TYPE = hex"0302000000010000000c"; // i32 [1, 12]

    function setUp() public {
        registry = new ModelRegistry();
    }

    function test_register_succeeds() public {
        bytes32 opsRoot = keccak256("ops");
        bytes32 weightsRoot = keccak256("weights");
        // programHash = keccak256(version u32 || n_ops u32 || n_weights u32 || output_slot u32 || type || opsRoot)
        bytes memory header =
            bytes.concat(hex"00000001", hex"0000002b", hex"00000011", hex"0000002b", INPUT_TYPE, opsRoot);
        bytes32 programHash = keccak256(header);
        bytes32 expectedId = keccak256(bytes.concat(programHash, weightsRoot));
        Model memory expected = Model({
            programHash: programHash,
            opsRoot: opsRoot,
            weightsRoot: weightsRoot,
            inputTypeHash: keccak256(INPUT_TYPE),
            version: 1,
            nOps: 43,
            nWeights: 17,
            outputSlot: 43,
            registrant: address(this)
        });
        vm.expectEmit();
        emit IModelRegistry.ModelRegistered(expectedId, programHash, address(this), expected, INPUT_TYPE, "uri");
        bytes32 id = registry.register(1, 43, 17, 43, INPUT_TYPE, opsRoot, weightsRoot, "uri");
        assertEq(id, expectedId, "model id");
        Model memory m = registry.model(id);
        assertEq(m.programHash, programHash, "program hash");
        assertEq(m.nOps, 43, "n ops");
        assertEq(m.registrant, address(this), "registrant");
        assertTrue(registry.isRegistered(id), "registered");
        assertTrue(!registry.isRegistered(keccak256("other")), "others are not");
    }

    function test_register_twice_reverts() public {
        bytes32 id = registry.register(1, 3, 0, 3, INPUT_TYPE, bytes32(0), bytes32(0), "");
        vm.expectRevert(abi.encodeWithSelector(E.ModelAlreadyRegistered.selector, id));
        registry.register(1, 3, 0, 3, INPUT_TYPE, bytes32(0), bytes32(0), "another uri");
    }

    function test_register_emptyProgram_reverts() public {
        vm.expectRevert(E.EmptyProgram.selector);
        registry.register(1, 0, 0, 0, INPUT_TYPE, bytes32(0), bytes32(0), "");
    }

    function test_register_badOutputSlot_reverts() public {
        vm.expectRevert(abi.encodeWithSelector(E.BadOutputSlot.selector, 4, 3));
        registry.register(1, 3, 0, 4, INPUT_TYPE, bytes32(0), bytes32(0), "");
    }

    function test_register_badInputType_reverts() public {
        vm.expectRevert(E.BadTensorType.selector);
        registry.register(1, 3, 0, 3, hex"040100000001", bytes32(0), bytes32(0), "");
        vm.expectRevert(E.BadTensorType.selector);
        registry.register(1, 3, 0, 3, hex"0102000000010000", bytes32(0), bytes32(0), "");
    }

    function testFuzz_register_distinctHeadersDistinctIds_succeeds(uint32 nOps_, uint32 nWeights_, bytes32 opsRoot_)
        public
    {
        vm.assume(nOps_ > 0 && nOps_ < type(uint32).max);
        bytes32 a = registry.register(1, nOps_, nWeights_, nOps_, INPUT_TYPE, opsRoot_, bytes32(0), "");
        bytes32 b = registry.register(1, nOps_ + 1, nWeights_, nOps_, INPUT_TYPE, opsRoot_, bytes32(0), "");
        bytes32 c = registry.register(1, nOps_, nWeights_, nOps_, INPUT_TYPE, opsRoot_, bytes32(uint256(1)), "");
        assertTrue(a != b && a != c && b != c, "any header or root change gives a new id");
    }
}
