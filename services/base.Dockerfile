# The base of FLOW's images where an image registry can be reached: Debian bookworm's slim image
# with Debian's own python3 (the packages in services/base-packages.txt). tools/images.sh makes the
# same base from the same packages with mmdebstrap, where no registry can be reached; the README
# ("Images") says what differs between the two.
#   buildah bud --format docker -f services/base.Dockerfile -t flow-base:bookworm .
ARG DEBIAN=debian:12-slim
# checkov:skip=CKV_DOCKER_7: DEBIAN is a build argument whose default names the tag (12-slim)
# checkov:skip=CKV_DOCKER_2: a base, not a service: each image built on it has its own HEALTHCHECK
# checkov:skip=CKV_DOCKER_3: a base, not a service: each image built on it sets its non-root USER
# DL3006: the tag is the build argument's (12-slim); hadolint cannot see through it.
# hadolint ignore=DL3006
FROM ${DEBIAN}
COPY services/base-packages.txt /tmp/
# DL3008: versions are bookworm's of the day, as in the mmdebstrap base; the list is the pin.
# hadolint ignore=DL3008
RUN apt-get update \
 && xargs --arg-file=/tmp/base-packages.txt apt-get install -y --no-install-recommends \
 && rm -rf /var/lib/apt/lists/* /tmp/base-packages.txt
ENV LANG=C.UTF-8
