using System.Runtime.InteropServices;
using IoMux.Interop;

namespace IoMux;

/// <summary>
/// The libc calls through which a backend learns what a descriptor is and whether it is at end of stream — fstat,
/// FIONREAD, getsockopt(SO_TYPE), getpeername — together with the numbers of one OS that go into and come out of
/// them (the struct stat layout, the ioctl request, the socket level and option, SOCK_STREAM, the errno values).
/// <para>Every backend uses <see cref="Native"/>. A backend of another OS run over a model (tests/IoMux.Models)
/// is given the model's subclass instead: the backend then speaks that OS's numbers, taken from
/// <see cref="OsAbi"/> as on the real system, and the model answers in its own, independently typed ones and
/// translates to Linux underneath. A wrong number in <see cref="OsAbi"/> then fails on the model target, where it
/// would otherwise run only on an OS this project cannot test on.</para>
/// </summary>
internal unsafe class OsCalls
{
    /// <summary>The calls of the OS this process runs on.</summary>
    public static OsCalls Native { get; } = new(Platform.Flavor);

    /// <summary>Calls with <paramref name="os"/>'s numbers (the native ones, or a model's target).</summary>
    protected OsCalls(UnixFlavor os)
    {
        Flavor = os;
        Stat = OsAbi.Stat(os, RuntimeInformation.ProcessArchitecture);
        FionRead = OsAbi.FionRead(os);
        SolSocket = OsAbi.SolSocket(os);
        SoType = OsAbi.SoType(os);
        SockStream = OsAbi.SockStream(os);
        Errnos = OsAbi.Errnos(os);
    }

    /// <summary>This host's calls with <paramref name="os"/>'s numbers: for tests of a per-OS rule (the numbers are
    /// wrong for the host's kernel unless <paramref name="os"/> is the host's OS).</summary>
    internal static OsCalls WithNumbersOf(UnixFlavor os) => new(os);

    /// <summary>The OS whose numbers these are.</summary>
    public UnixFlavor Flavor { get; }

    /// <summary>Where struct stat's fields sit.</summary>
    public StatLayout Stat { get; }

    /// <summary>FIONREAD.</summary>
    public nuint FionRead { get; }

    /// <summary>SOL_SOCKET.</summary>
    public int SolSocket { get; }

    /// <summary>SO_TYPE.</summary>
    public int SoType { get; }

    /// <summary>SOCK_STREAM as SO_TYPE reports it.</summary>
    public int SockStream { get; }

    /// <summary>The errno values the backends compare answers with.</summary>
    public KernelErrnos Errnos { get; }

    /// <summary>fstat(2) into <paramref name="buffer"/> (at least <see cref="StatLayout.Size"/> bytes, laid out as
    /// <see cref="Stat"/>): 0, or the errno.</summary>
    public virtual int Fstat(int fd, byte* buffer) => DescriptorProbe.Fstat(fd, buffer) == 0 ? 0 : Errno.Last;

    /// <summary>ioctl(2) with an int argument: 0, or the errno.</summary>
    public virtual int Ioctl(int fd, nuint request, int* value) => LibC.ioctl(fd, request, value) == 0 ? 0 : Errno.Last;

    /// <summary>getsockopt(2) for an int option: 0, or the errno.</summary>
    public virtual int GetSocketOption(int fd, int level, int option, int* value)
    {
        uint length = sizeof(int);
        return LibC.getsockopt(fd, level, option, value, &length) == 0 ? 0 : Errno.Last;
    }

    /// <summary>getpeername(2): 0 when the socket has a peer, or the errno.</summary>
    public virtual int GetPeerName(int fd)
    {
        byte* address = stackalloc byte[128];
        uint length = 128;
        return LibC.getpeername(fd, address, &length) == 0 ? 0 : Errno.Last;
    }

    /// <summary>The descriptor's kind through <see cref="Fstat"/>, read with <see cref="Stat"/>: 0, or the errno when
    /// fstat fails (e.g. EBADF for a closed fd).</summary>
    public int TryGetKind(int fd, out DescriptorKind kind)
    {
        byte* buffer = stackalloc byte[DescriptorProbe.BufferSize];
        kind = DescriptorKind.Other;
        int errno = Fstat(fd, buffer);
        if (errno != 0)
            return errno;
        DescriptorProbe.Read(buffer, Stat, out kind, out _, out _);
        return 0;
    }

    /// <summary>The check every backend makes on add: the descriptor must be open and waitable.</summary>
    public DescriptorKind RequireWaitable(int fd, string operation)
    {
        int errno = TryGetKind(fd, out var kind);
        if (errno != 0)
            throw new PosixException(operation, errno, $"fd {fd}");
        if (kind == DescriptorKind.RegularFile)
            throw new UnsupportedDescriptorException(fd, "regular file");
        if (kind == DescriptorKind.Directory)
            throw new UnsupportedDescriptorException(fd, "directory");
        return kind;
    }
}
