using IoMux.Interop;

namespace IoMux;

/// <summary>
/// Read hangup for kernels that do not report it (select everywhere; poll without POLLRDHUP). A readable
/// stream socket or pipe with nothing buffered is at end of stream. The probe consumes nothing: recv with
/// MSG_PEEK or SO_ERROR would swallow a pending error (Linux clears sk_err on read) that the consumer's own
/// read must still see. While data is buffered nothing is derived; the hangup shows once it is drained
/// (allowance D in docs/SEMANTICS.md).
/// </summary>
internal static unsafe class HangupDerivation
{
    /// <summary>Whether a zero-byte readable probe means end of stream for this descriptor (FIFOs and pipes,
    /// stream sockets; not datagram sockets, where an empty datagram reads as 0 too).</summary>
    public static bool CanDerive(OsCalls os, int fd, DescriptorKind kind)
    {
        if (kind == DescriptorKind.Fifo)
            return true;
        if (kind != DescriptorKind.Socket)
            return false;
        int type = 0;
        return os.GetSocketOption(fd, os.SolSocket, os.SoType, &type) == 0 && type == os.SockStream;
    }

    /// <summary>For a backend whose kernel reports no read hangup: derives one when the descriptor was reported
    /// readable, the registration reads, and the descriptor is a pipe or a stream socket. Also when the kernel
    /// said POLLHUP: without RDHUP, HUP with OUT looks like Linux's never-connected socket, and only the
    /// probe tells a connected socket's real hangup apart from it.</summary>
    public static void DeriveIfReadable(OsCalls os, DescriptorEntry entry, Interest armed, bool input, ref bool hangup, ref bool readHangup)
    {
        if (input && !readHangup && (armed & Interest.Readable) != 0 && entry.CanDeriveEndOfStream)
            Derive(os, entry, ref hangup, ref readHangup);
    }

    /// <summary>For a readable descriptor: sets <paramref name="hangup"/> (pipe writer gone) or
    /// <paramref name="readHangup"/> (socket peer shut its side) when nothing is buffered.</summary>
    public static void Derive(OsCalls os, DescriptorEntry entry, ref bool hangup, ref bool readHangup)
    {
        int available = -1;
        if (os.Ioctl(entry.Descriptor, os.FionRead, &available) != 0 || available != 0)
            return;
        if (entry.Kind == DescriptorKind.Fifo)
        {
            hangup = true;
            return;
        }
        // A socket that was never connected is readable with nothing buffered too; only a connected one
        // (getpeername succeeds, even after the peer's FIN) is at end of stream.
        if (PeerNameMeansConnected(os.GetPeerName(entry.Descriptor), os))
            readHangup = true;
    }

    /// <summary>Whether getpeername's answer says the socket is connected. illumos and Solaris answer EINVAL for a
    /// connected socket after a local shutdown(SHUT_WR) (illumos-gate usr/src/uts/common/fs/sockfs/sockcommon_sops.c
    /// so_getpeername: ENOTCONN without SS_ISCONNECTED, then "Added this check for X/Open": EINVAL with
    /// SS_CANTSENDMORE); a never-connected socket is still ENOTCONN there, so EINVAL counts as connected.</summary>
    internal static bool PeerNameMeansConnected(int errno, OsCalls os) =>
        errno == 0 || (os.Flavor is UnixFlavor.Illumos or UnixFlavor.Solaris && errno == os.Errnos.Einval);

    /// <summary>
    /// A POLLHUP that comes alone (no IN, OUT, ERR or RDHUP) on a stream socket means the socket was never
    /// connected: Linux's tcp_poll reports POLLHUP for the TCP_CLOSE state, and a real end of a connection always
    /// shuts the receive side too (POLLIN|POLLRDHUP, with POLLERR after a reset). It is not a hangup (contract
    /// rule 2: no false positives); reads return at once (ENOTCONN), so it is reported as readable, like
    /// select(2) does, never silently dropped (a level registration would otherwise wake the waiter forever and
    /// deliver nothing). Only this rare combination pays for the fstat and getpeername.
    /// </summary>
    public static void ExplainLoneHangup(OsCalls os, int fd, ref bool input, ref bool hangup)
    {
        if (os.TryGetKind(fd, out var kind) != 0 || kind != DescriptorKind.Socket)
            return;
        if (os.GetPeerName(fd) != os.Errnos.Enotconn)
            return;
        hangup = false;
        input = true;
    }

    /// <summary>True for the combination <see cref="ExplainLoneHangup"/> looks into.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public static bool IsLoneHangup(bool input, bool output, bool error, bool hangup, bool readHangup) =>
        hangup & !(input | output | error | readHangup);
}
