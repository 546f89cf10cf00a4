"""Shared fixtures: tiny random backbones (offline, seconds) and small tasks."""

from __future__ import annotations

import logging

import pytest
import torch

from clipadapt.backbone import create_backbone
from clipadapt.data.gss_schema import GSS_SCHEMA, gss_attribute
from clipadapt.task import TaskSpec

logging.getLogger().setLevel(logging.ERROR)  # open_clip warns on every random init


@pytest.fixture(scope="session", autouse=True)
def fair_share_of_the_cores():
    """The suite takes the cores other work leaves free, as every clipadapt command does
    (CI may run beside another suite on two cores)."""
    from clipadapt.threads import share_cores

    share_cores()


@pytest.fixture(scope="session")
def micro_backbone():
    """clipadapt-micro with seeded random weights: 2 blocks, width 64, embed 32, 32 px."""
    return create_backbone("clipadapt-micro", None)


@pytest.fixture(scope="session")
def weather_task():
    return TaskSpec((gss_attribute("weather", GSS_SCHEMA["weather"][1]),))


@pytest.fixture(scope="session")
def two_attribute_task():
    return TaskSpec((gss_attribute("weather", GSS_SCHEMA["weather"][1]), gss_attribute("glare", GSS_SCHEMA["glare"][1])))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own feature cache, never the user's."""
    monkeypatch.setenv("CLIPADAPT_CACHE", str(tmp_path / "clipadapt-cache"))
    torch.manual_seed(0)
