# ilscaling: scaling laws for imitation learning (Tuyls et al. 2023) as one workflow.
# config.yaml is the default study. A study given with --configfile replaces it whole (Snakemake
# alone would merge the two); --config key=value merges into either (README: Configuration).
from snakemake.utils import min_version

# As pyproject.toml: the profiles, report and executor settings the workflow uses.
min_version("9.27.1")


if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


# The report's front page: the study, its configuration and its headline numbers.
report: "workflow/report/frontpage.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/fit.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/forecast.smk"
include: "workflow/rules/published.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        all_outputs(),
