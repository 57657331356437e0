"""What the SageMaker SDK sends, captured at the botocore level (no hand-made copy).

`Capture.attach(boto_session)` registers on the session's botocore events:
- `provide-client-params.sagemaker`: every SageMaker call's parameters, as the SDK passes them
  to botocore, are recorded (a real launch writes them to requests.json);
- on a dry run, `before-send` answers every HTTP request itself, so nothing leaves the machine:
  the S3 uploads of the code get an empty 200 (their keys are listed), STS gets a placeholder
  account, and the Create* call is recorded and then stopped before it is sent.
`validate()` checks the recorded parameters with botocore's own ParamValidator against the
SageMaker service model.
"""

from __future__ import annotations

import copy
import io
from dataclasses import dataclass, field

CREATE_CALLS = ("CreateTrainingJob", "CreateHyperParameterTuningJob")
PLACEHOLDER_ACCOUNT = "000000000000"
_STS_IDENTITY = (
    '<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
    f"<GetCallerIdentityResult><Arn>arn:aws:iam::{PLACEHOLDER_ACCOUNT}:user/dry-run</Arn><UserId>DRYRUN</UserId>"
    f"<Account>{PLACEHOLDER_ACCOUNT}</Account></GetCallerIdentityResult>"
    "<ResponseMetadata><RequestId>dry-run</RequestId></ResponseMetadata>"
    "</GetCallerIdentityResponse>"
)


_DENIED = (
    "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>"
    "<Message>dry run: {op} is not called</Message></Error>"
    "<RequestId>dry-run</RequestId></ErrorResponse>"
)
_BUCKETS = (
    '<ListAllMyBucketsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Buckets><Bucket>'
    "<Name>{name}</Name><CreationDate>2020-01-01T00:00:00.000Z</CreationDate></Bucket></Buckets>"
    "</ListAllMyBucketsResult>"
)


_MULTIPART = (
    '<InitiateMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    "<Bucket>{bucket}</Bucket><Key>{key}</Key><UploadId>dry-run</UploadId>"
    "</InitiateMultipartUploadResult>"
)
_COMPLETED = (
    '<CompleteMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    '<ETag>"dry-run"</ETag></CompleteMultipartUploadResult>'
)


_ARN = f"arn:aws:sagemaker:dry-run:{PLACEHOLDER_ACCOUNT}"
_CREATED = (
    f'{{"ModelArn": "{_ARN}:model/dry-run", "EndpointConfigArn": "{_ARN}:endpoint-config/'
    f'dry-run", "EndpointArn": "{_ARN}:endpoint/dry-run"}}'
)


class Stopped(Exception):
    """Raised inside the SDK to stop a dry run at the Create* call (caught by the caller)."""


class _Raw(io.BytesIO):
    def stream(self, **kwargs):
        yield self.getvalue()


@dataclass
class Capture:
    dry_run: bool
    bucket: str = ""  # a dry run answers that it exists
    calls: list[tuple[str, dict]] = field(default_factory=list)
    uploads: list[str] = field(default_factory=list)
    unanswered: list[str] = field(default_factory=list)

    def attach(self, boto_session) -> None:
        events = boto_session.events
        events.register("provide-client-params.sagemaker", self._record)
        if self.dry_run:
            events.register_first("before-send", self._answer)

    def _record(self, params, model, **kwargs):
        self.calls.append((model.name, copy.deepcopy(params)))
        if self.dry_run and model.name in CREATE_CALLS:
            raise Stopped(model.name)

    def _answer(self, request, **kwargs):
        from botocore.awsrequest import AWSResponse

        event = kwargs.get("event_name", "")  # before-send.<service>.<Operation>
        _, service, operation = [*event.split("."), "", ""][:3]
        body = b""
        if service == "sts" and operation == "GetCallerIdentity":
            body = _STS_IDENTITY.encode()
        elif service == "s3" and operation == "ListBuckets":
            body = _BUCKETS.format(name=self.bucket).encode()
        elif service == "s3":
            url = request.url.split("?")[0]
            if operation == "PutObject":
                self.uploads.append(url)
            elif operation == "CreateMultipartUpload":  # a large file (e.g. the offline wheels)
                self.uploads.append(url)
                body = _MULTIPART.format(bucket=self.bucket, key=url.rpartition("/")[2]).encode()
            elif operation == "CompleteMultipartUpload":
                body = _COMPLETED.encode()
        elif service == "sagemaker":  # the ARNs a Create* answers with (deploy reads them)
            body = _CREATED.encode()
        else:  # e.g. the SDK's IAM check of the role: refused, as without IAM read access
            self.unanswered.append(f"{service}.{operation}")
            body = _DENIED.format(op=operation).encode()
            return AWSResponse(request.url, 403, {"x-amz-request-id": "dry-run"}, _Raw(body))
        headers = {"ETag": '"dry-run"', "x-amz-request-id": "dry-run"}
        return AWSResponse(request.url, 200, headers, _Raw(body))

    def create_call(self) -> tuple[str, dict] | None:
        return next(((n, p) for n, p in reversed(self.calls) if n in CREATE_CALLS), None)

    def job_name(self) -> str | None:
        call = self.create_call()
        if call is None:
            return None
        _, params = call
        return params.get("TrainingJobName") or params.get("HyperParameterTuningJobName")

    def upload_summary(self) -> list[str]:
        """One line per uploaded folder (the code and the SDK's drivers): what a dry run skipped."""
        folders: dict[str, int] = {}
        for url in self.uploads:
            head, _, _ = url.rpartition("/input/")
            rest = url[len(head) + len("/input/") :]
            folder = f"{head}/input/{rest.split('/')[0]}" if head else url.rpartition("/")[0]
            folders[folder] = folders.get(folder, 0) + 1
        lines = [f"would upload {n} objects to {f}" for f, n in folders.items()]
        if self.unanswered:
            lines.append(f"not called on a dry run: {', '.join(sorted(set(self.unanswered)))}")
        return lines


def validate(operation: str, params: dict) -> list[str]:
    """botocore's ParamValidator on the request, against SageMaker's service model: the
    problems it reports (empty when the request is well-formed)."""
    import botocore.session
    from botocore.validate import ParamValidator

    model = botocore.session.get_session().get_service_model("sagemaker")
    report = ParamValidator().validate(params, model.operation_model(operation).input_shape)
    return [line for line in report.generate_report().splitlines() if line.strip()]
