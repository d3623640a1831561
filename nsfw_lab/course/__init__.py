"""The course machinery: the papermill runner (``nsfw-lab study``) and what notebooks record."""

from nsfw_lab.course.hygiene import COMMON as COMMON_PARAMETERS
from nsfw_lab.course.report import Report
from nsfw_lab.course.runner import NotebookResult, run_study

__all__ = ["COMMON_PARAMETERS", "NotebookResult", "Report", "run_study"]
