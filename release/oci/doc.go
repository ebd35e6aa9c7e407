// Package oci carries paczfs releases through OCI registries, the
// distribution engine fleets already run (with their mirrors, auth and
// CDNs): Push uploads a release directory as one OCI artifact, NewSource
// reads one back as a release.Source for release.Apply.
//
// The artifact is an OCI image manifest (OCI 1.0, so registries that
// predate artifactType store it; distribution 2.8 does) whose config is
// the release's manifest.json (media type ConfigMediaType), and whose
// layers are manifest.json, its detached signature and the streams, each
// titled (org.opencontainers.image.title) with its file name. A stream's
// layer digest is the SHA-256 the signed manifest gives it, so the
// registry protocol and the release manifest name the same bytes.
// References are registry/repository:tag or @digest, as docker uses them.
//
// It is a package of its own because it brings go-containerregistry and
// its dependencies: a device or builder that uses files or HTTP does not
// link them.
//
// Needs: a registry reachable over HTTPS (or HTTP with Insecure), and
// credentials in the docker config (~/.docker/config.json) when the
// registry asks for them.
package oci
