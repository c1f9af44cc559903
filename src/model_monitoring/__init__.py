"""The monitoring stage: is the deployed model, and the data it sees, still healthy?

    monitored_model    which version is watched, and its training data (the reference)
    production_rows    the rows that version answered: labelled, and recent for the
                       estimate; which rows each figure used
    performance_estimate  accuracy estimated from calibrated confidences, before labels
    reports            the Evidently reports (summary, drift, classification) and their
                       conclusions
    evidently_import   importing only the part of Evidently the reports use (seconds less)
    report_worker      the reports in forked processes, while the caller loads the data
    alerts             the run's alerts and figures
    shadow_comparison  champion against shadow on the same labelled rows, and the finding
    auto_promotion     asking the deployment pipeline to promote a better shadow
    history            the runs recorded in MLflow, and their history
    end_card           the `end` card: verdict, estimate, history chart, champion and shadow

src/pipelines/monitoring.py runs them in that order.
"""
