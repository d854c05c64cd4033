using System.Runtime.InteropServices;
using IoMux.Interop;

namespace IoMux.Backends.Kqueue;

/// <summary>One kevent, in a form independent of the OS's struct layout (see <see cref="KeventLayout"/>):
/// what goes into and comes out of kevent(2).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct KEvent
{
    /// <summary>ident: the descriptor (or a user-chosen id for EVFILT_USER).</summary>
    public ulong Ident;
    /// <summary>filter: EVFILT_READ, EVFILT_WRITE ... (numbers per OS: <see cref="KqueueProfile"/>).</summary>
    public short Filter;
    /// <summary>flags: EV_ADD, EV_EOF ... (<see cref="Kq"/>).</summary>
    public ushort Flags;
    /// <summary>fflags: filter-specific flags; on EV_EOF the socket error, if any.</summary>
    public uint FFlags;
    /// <summary>data: bytes readable, buffer space, or the errno of an EV_ERROR receipt.</summary>
    public long Data;
    /// <summary>udata: opaque; IoMux stores slot and generation here.</summary>
    public ulong UData;
}

/// <summary>The kevent flag values: the same bits on FreeBSD 12+, macOS, NetBSD, OpenBSD 7, DragonFly and
/// libkqueue (docs/research/kqueue-ports-constants.md has each OS's header). NOTE_OOB is not among them: its
/// value differs per OS and lives in <see cref="KqueueProfile.ExceptFlags"/>.</summary>
internal static class Kq
{
#pragma warning disable CS1591 // the names are kqueue(2)'s
    public const ushort EV_ADD = 0x1, EV_DELETE = 0x2, EV_ENABLE = 0x4, EV_DISABLE = 0x8, EV_ONESHOT = 0x10,
        EV_CLEAR = 0x20, EV_RECEIPT = 0x40, EV_DISPATCH = 0x80, EV_ERROR = 0x4000, EV_EOF = 0x8000;
    public const uint NOTE_TRIGGER = 0x01000000;
#pragma warning restore CS1591
}

/// <summary>
/// Where the fields of struct kevent sit. FreeBSD 12+ has 64 bytes (int64 data, then udata, then ext[4]);
/// macOS and libkqueue 32 bytes (intptr_t data); NetBSD 40 bytes (32-bit filter and flags). The layout is
/// picked at run time, so one build serves every BSD.
/// </summary>
/// <param name="Name">Which OS.</param>
/// <param name="Size">sizeof(struct kevent).</param>
/// <param name="FilterOffset">offsetof(filter).</param>
/// <param name="WideFilterAndFlags">filter and flags are 32-bit (NetBSD) instead of 16-bit.</param>
/// <param name="FlagsOffset">offsetof(flags).</param>
/// <param name="FFlagsOffset">offsetof(fflags).</param>
/// <param name="DataOffset">offsetof(data).</param>
/// <param name="UDataOffset">offsetof(udata).</param>
internal sealed record KeventLayout(string Name, int Size, int FilterOffset, bool WideFilterAndFlags, int FlagsOffset, int FFlagsOffset, int DataOffset, int UDataOffset)
{
    /// <summary>FreeBSD 12 and later (sys/event.h: ident, filter, flags, fflags, int64 data, udata, ext[4]).</summary>
    public static KeventLayout FreeBsd { get; } = new("freebsd", 64, 8, false, 10, 12, 16, 24);

    /// <summary>macOS struct kevent, and libkqueue's: 32 bytes.</summary>
    public static KeventLayout Darwin { get; } = new("darwin", 32, 8, false, 10, 12, 16, 24);

    /// <summary>NetBSD: uint32 filter and flags push the rest down: 40 bytes.</summary>
    public static KeventLayout NetBsd { get; } = new("netbsd", 40, 8, true, 12, 16, 24, 32);

    /// <summary>Writes <paramref name="e"/> in this layout at <paramref name="slot"/> (Size bytes, zeroed first).</summary>
    public unsafe void Write(byte* slot, in KEvent e)
    {
        new Span<byte>(slot, Size).Clear();
        *(ulong*)slot = e.Ident;
        if (WideFilterAndFlags)
        {
            *(int*)(slot + FilterOffset) = e.Filter;
            *(uint*)(slot + FlagsOffset) = e.Flags;
        }
        else
        {
            *(short*)(slot + FilterOffset) = e.Filter;
            *(ushort*)(slot + FlagsOffset) = e.Flags;
        }
        *(uint*)(slot + FFlagsOffset) = e.FFlags;
        *(long*)(slot + DataOffset) = e.Data;
        *(ulong*)(slot + UDataOffset) = e.UData;
    }

    /// <summary>Reads the kevent at <paramref name="slot"/>.</summary>
    public unsafe KEvent Read(byte* slot) => new()
    {
        Ident = *(ulong*)slot,
        Filter = WideFilterAndFlags ? (short)*(int*)(slot + FilterOffset) : *(short*)(slot + FilterOffset),
        Flags = WideFilterAndFlags ? (ushort)*(uint*)(slot + FlagsOffset) : *(ushort*)(slot + FlagsOffset),
        FFlags = *(uint*)(slot + FFlagsOffset),
        Data = *(long*)(slot + DataOffset),
        UData = *(ulong*)(slot + UDataOffset),
    };
}

/// <summary>
/// kqueue(2) and kevent(2) as a seam: the backend's logic runs over the OS's calls (or libkqueue's on Linux)
/// and, in the conformance suite on Linux, over <c>KqueueModel</c>.
/// </summary>
internal interface IKqueueSystem
{
    /// <summary>This system's filter numbers and layout.</summary>
    KqueueProfile Profile { get; }

    /// <summary>The descriptor checks (fstat, getsockopt) with this system's numbers, and its errno values:
    /// <see cref="OsCalls.Native"/> on a real kqueue, the model's own on a model.</summary>
    OsCalls Os { get; }

    /// <summary>kqueue(): a descriptor, or a negative errno.</summary>
    int Create();

    /// <summary>kevent(): applies <paramref name="changes"/>, then returns up to <paramref name="events"/>.Length events,
    /// waiting up to <paramref name="timeout"/> (null: forever). Returns the count, or a negative errno.</summary>
    int Kevent(int kq, ReadOnlySpan<KEvent> changes, Span<KEvent> events, TimeSpan? timeout);

    /// <summary>Closes the queue.</summary>
    void Close(int kq);
}
