package image_test

// cryptPassphrase is the passphrase of the encrypted-root lab image:
// TestLabBuildEncryptedRootImage builds with it, TestBootEncryptedRoot
// types it on the serial console.
const cryptPassphrase = "paczfs lab root passphrase"
