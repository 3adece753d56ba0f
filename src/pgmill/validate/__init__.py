"""`pgmill validate`: the brief's measurable success criteria checked against this project's own data.

    from pgmill.validate import validate, render_markdown
    report = validate(conn, ctx)          # criteria.py: each criterion's figure, source, threshold, status
    text = render_markdown(report)        # markdown.py: validation.md

A criterion without data is "not measured", never "pass"; the report passes (exit code 0) when every
measured criterion passes. docs/validate.md says what each criterion measures and from where.
"""

from pgmill.validate.criteria import DEFAULT_SINCE, validate
from pgmill.validate.markdown import render_markdown
from pgmill.validate.model import Criterion, Validation

__all__ = ["DEFAULT_SINCE", "Criterion", "Validation", "render_markdown", "validate"]
