using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using IoMux.Web;

namespace IoMux.Tests.Web;

/// <summary>The structs of the other OSes' sendfile calls, against their headers' 64-bit layouts (FreeBSD and
/// macOS sys/socket.h struct sf_hdtr, illumos sys/sendfile.h struct sendfilevec, POSIX struct iovec). Those
/// headers are not on this machine, so the expected numbers are written from them here; iovec is also checked
/// against this machine's C compiler by the layout tests.</summary>
public sealed class SendFileLayoutTests
{
    [Test]
    public void IoVecIsPointerThenSize() => Assert.Multiple(() =>
    {
        Assert.That(Unsafe.SizeOf<IoVec>(), Is.EqualTo(16));
        Assert.That(Marshal.OffsetOf<IoVec>(nameof(IoVec.Length)), Is.EqualTo((nint)8));
    });

    [Test]
    public void SfHdtrHasTwoPointerCountPairs() => Assert.Multiple(() =>
    {
        Assert.That(Unsafe.SizeOf<SfHdtr>(), Is.EqualTo(32));
        Assert.That(Marshal.OffsetOf<SfHdtr>(nameof(SfHdtr.HeaderCount)), Is.EqualTo((nint)8));
        Assert.That(Marshal.OffsetOf<SfHdtr>(nameof(SfHdtr.Trailers)), Is.EqualTo((nint)16));
        Assert.That(Marshal.OffsetOf<SfHdtr>(nameof(SfHdtr.TrailerCount)), Is.EqualTo((nint)24));
    });

    [Test]
    public void SendFileVecIsFdFlagOffsetLength() => Assert.Multiple(() =>
    {
        Assert.That(Unsafe.SizeOf<SendFileVec>(), Is.EqualTo(24));
        Assert.That(Marshal.OffsetOf<SendFileVec>(nameof(SendFileVec.Flag)), Is.EqualTo((nint)4));
        Assert.That(Marshal.OffsetOf<SendFileVec>(nameof(SendFileVec.Offset)), Is.EqualTo((nint)8));
        Assert.That(Marshal.OffsetOf<SendFileVec>(nameof(SendFileVec.Length)), Is.EqualTo((nint)16));
        Assert.That(SendFileVec.SFV_FD_SELF, Is.EqualTo(-2));
    });
}
