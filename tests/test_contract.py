"""The names packages share are written once, in trainer/contract.py (issue 17 point 1).

Every string literal in selfsup's sources (pipeline/, components/, trainer/, kubeflow/, bench/) that equals a
contract value is reported, unless the value is too common a word to mean the contract (GENERIC below): a file
name, a component id, a serving output or a history phase written out again would let the two sides drift.
"""

import ast
import os

import pytest

from trainer import contract

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("pipeline", "components", "trainer", "kubeflow", "bench")
CONTRACT_FILE = os.path.join("trainer", "contract.py")
# Contract values that are also ordinary words of other meanings (dict keys, TFDS feature names, argparse
# destinations): a literal equal to one of these is not necessarily the contract's name.
GENERIC = {"image", "label", "path", "train", "eval", "unlabeled", "config", "candidate", "baseline",
           "pretrainer", "classes", "source", "production_model", "linear", "supervised", "pretrain", "finetune",
           "matched", "fixmatch", "distill",
           # history.json's keys are also summary.json's and report_data.json's, which other code writes
           "history", "timings", "labeled_train_images"}


def contract_values():
    return {value for name, value in vars(contract).items()
            if name.isupper() and isinstance(value, str) and value not in GENERIC}


def source_files():
    for package in PACKAGES:
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.relpath(os.path.join(folder, name), ROOT)
                    if path != CONTRACT_FILE:
                        yield path


def literals_equal_to(values, path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), path)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in values
            and id(node) not in docstrings]


def test_the_contract_has_the_names_the_packages_share():
    values = contract_values()
    assert {"history.json", "class_names.json", "ingest_report.json", "probabilities", "CandidateTrainer"} <= values


def test_no_shared_name_is_written_outside_the_contract():
    values = contract_values()
    found = [f"{path}:{line}: {value!r}" for path in source_files() for line, value in literals_equal_to(values, path)]
    assert not found, "use the trainer/contract.py name instead of the literal:\n" + "\n".join(found)


@pytest.mark.parametrize("phase", [contract.PRETRAIN_PHASE, contract.FIXMATCH_PHASE, contract.MATCHED_PHASE])
def test_history_keys_are_phase_slash_metric(phase):
    assert contract.history_key(phase, "loss") == f"{phase}/loss"
