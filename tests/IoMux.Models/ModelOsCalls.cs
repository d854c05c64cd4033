using System.Runtime.InteropServices;
using IoMux.Interop;

namespace IoMux.Models;

/// <summary>
/// The descriptor checks a backend makes (fstat, FIONREAD, getsockopt(SO_TYPE), getpeername) as another OS answers
/// them, on Linux descriptors. The backend calls with the numbers its own tables give for that OS (OsAbi); this
/// class takes them only if they equal the model's (<see cref="TargetAbi"/>, typed from the headers), translates to
/// Linux's numbers for the real call, and answers in the target's: struct stat in the target's layout (every byte
/// the layout does not name is filled with 0xA5, so a field read at a wrong offset reads garbage), SO_TYPE and errno
/// values as the target numbers them. A request the target does not know is refused as the target would (ENOTTY,
/// ENOPROTOOPT) and recorded in <see cref="Refused"/>: the conformance suite over the models fails then.
/// </summary>
internal sealed unsafe partial class ModelOsCalls : OsCalls
{
    [LibraryImport("libc", EntryPoint = "fstat", SetLastError = true)] private static partial int linux_fstat(int fd, byte* buffer);
    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)] private static partial int linux_ioctl(int fd, nuint request, int* value);
    [LibraryImport("libc", EntryPoint = "getsockopt", SetLastError = true)] private static partial int linux_getsockopt(int fd, int level, int option, int* value, uint* length);
    [LibraryImport("libc", EntryPoint = "getpeername", SetLastError = true)] private static partial int linux_getpeername(int fd, byte* address, uint* length);
    [LibraryImport("libc", EntryPoint = "send", SetLastError = true)] private static partial nint linux_send(int fd, void* buffer, nuint length, int flags);

    private static readonly TargetAbi Linux = TargetAbi.Linux;

    /// <summary>The calls of <paramref name="target"/>.</summary>
    public ModelOsCalls(TargetAbi target) : base(target.Os) => Target = target;

    /// <summary>The OS played.</summary>
    public TargetAbi Target { get; }

    /// <summary>Requests the modelled OS refused for a reason other than the descriptor (an unknown ioctl or socket
    /// option: a wrong number in the backend's table).</summary>
    public static System.Collections.Concurrent.ConcurrentQueue<string> Refused { get; } = new();

    private int Fail() => Target.FromLinux(Marshal.GetLastPInvokeError());

    /// <inheritdoc />
    public override int Fstat(int fd, byte* buffer)
    {
        byte* linux = stackalloc byte[256];
        if (linux_fstat(fd, linux) != 0)
            return Fail();
        var from = Linux.Stat;
        var to = Target.Stat;
        new Span<byte>(buffer, to.StatSize).Fill(0xA5);
        uint mode = *(uint*)(linux + from.Mode);
        if (to.ModeWidth == 4)
            *(uint*)(buffer + to.Mode) = mode;
        else
            *(ushort*)(buffer + to.Mode) = (ushort)mode; // S_IF* and the permission bits fit 16 bits everywhere
        *(long*)(buffer + to.Size) = *(long*)(linux + from.Size);
        *(long*)(buffer + to.Mtime) = *(long*)(linux + from.Mtime);
        *(long*)(buffer + to.Mtime + 8) = *(long*)(linux + from.Mtime + 8);
        return 0;
    }

    /// <inheritdoc />
    public override int Ioctl(int fd, nuint request, int* value)
    {
        if (request != Target.FionRead)
        {
            Refused.Enqueue($"{Target.Name}: ioctl request 0x{request:X} on fd {fd} is not FIONREAD (0x{Target.FionRead:X}, {Target.Citation}): ENOTTY");
            return Target.Errnos.Enotty;
        }
        return linux_ioctl(fd, Linux.FionRead, value) == 0 ? 0 : Fail();
    }

    /// <inheritdoc />
    public override int GetSocketOption(int fd, int level, int option, int* value)
    {
        if ((level, option) != Target.SocketOption)
        {
            Refused.Enqueue($"{Target.Name}: getsockopt level 0x{level:X} option 0x{option:X} is not SOL_SOCKET/SO_TYPE " +
                $"(0x{Target.SocketOption.Level:X}/0x{Target.SocketOption.Type:X}, {Target.Citation}): ENOPROTOOPT");
            return Target.Errnos.Enoprotoopt;
        }
        uint length = sizeof(int);
        int type = 0;
        if (linux_getsockopt(fd, Linux.SocketOption.Level, Linux.SocketOption.Type, &type, &length) != 0)
            return Fail();
        *value = type == Linux.SocketTypes.Stream ? Target.SocketTypes.Stream
            : type == Linux.SocketTypes.Dgram ? Target.SocketTypes.Dgram
            : type == Linux.SocketTypes.SeqPacket ? Target.SocketTypes.SeqPacket
            : type;
        return 0;
    }

    /// <inheritdoc />
    public override int GetPeerName(int fd)
    {
        byte* address = stackalloc byte[128];
        uint length = 128;
        if (linux_getpeername(fd, address, &length) != 0)
            return Fail();
        // illumos: a connected socket whose own side shut writing answers EINVAL (so_getpeername).
        if (Target.PeerNameEinvalAfterShutdown && WriteSideShut(fd))
            return Target.Errnos.Einval;
        return 0;
    }

    // A zero-byte send fails with EPIPE once this side shut writing (MSG_DONTWAIT | MSG_NOSIGNAL); it moves no data.
    private static bool WriteSideShut(int fd) => linux_send(fd, null, 0, 0x40 | 0x4000) < 0 && Marshal.GetLastPInvokeError() == 32 /* EPIPE */;
}
