"""Local PagerDuty + GitHub API emulator and the synthetic-organisation generator.

    from emulator import EmulatorServer, generate_organisation
    org = generate_organisation(seed=7)
    with EmulatorServer(org) as srv:
        print(srv.pagerduty_url, srv.github_url)

See docs/emulator.md.
"""

from .faults import FaultRule, Faults, parse_fault
from .generator import GeneratorConfig, generate_organisation, write_ground_truth, write_ownership
from .server import EmulatorServer

__all__ = [
    "EmulatorServer",
    "FaultRule",
    "Faults",
    "GeneratorConfig",
    "generate_organisation",
    "parse_fault",
    "write_ground_truth",
    "write_ownership",
]
