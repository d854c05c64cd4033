using System.Runtime.InteropServices;
using IoMux.Backends.EventPorts;
using IoMux.Backends.Kqueue;
using IoMux.Interop;
using IoMux.Models;

namespace IoMux.Tests;

/// <summary>
/// The backends' per-OS tables against the models' own, field by field. Both were typed from the OS headers, by
/// different hands and into different types (the models import no number from a backend); a difference means one
/// of the two readings is wrong, and the failure names both places so the header can settle it. The model runs
/// check the same numbers in use (a wrong one makes the modelled kernel refuse or misread); this test also covers
/// the numbers no model run reaches (RLIMIT_NOFILE, AF_INET6: servers and the conformance helpers use them).
/// </summary>
public sealed class ModelAbiCrossCheckTests
{
    public static IEnumerable<string> Targets => TargetAbi.All.Select(t => t.Name);

    public static IEnumerable<string> KqueueProfiles => KqueueAbi.All.Select(k => k.Name);

    private static void Same<T>(string field, T backend, string backendSource, T model, string modelSource) =>
        Assert.That(backend, Is.EqualTo(model),
            $"{field}: the backend's table says {backend} ({backendSource}), the model's says {model} ({modelSource})");

    [TestCaseSource(nameof(Targets))]
    public void TheOsTableAgreesWithTheModel(string name) => Compare(TargetAbi.All.Single(t => t.Name == name));

    private static void Compare(TargetAbi model)
    {
        var os = (UnixFlavor)model.Os; // the model names IoMux's copy of the enum, the table here is this assembly's
        const string Table = "src/Interop/OsAbi.cs";
        var stat = OsAbi.Stat(os, RuntimeInformation.ProcessArchitecture); // the model's layouts are this machine's architecture's (x86-64)
        var errnos = OsAbi.Errnos(os);
        Assert.Multiple(() =>
        {
            Same("FIONREAD", OsAbi.FionRead(os), $"{Table} FionRead", model.FionRead, model.Citation);
            Same("struct stat (mode, mode width, size, mtim, sizeof)", (stat.ModeOffset, stat.ModeWidth, stat.SizeOffset, stat.ModifiedOffset, stat.Size),
                $"{Table} Stat", model.Stat, model.Citation);
            Same("fstat symbol", stat.FstatSymbol, $"{Table} Stat", model.FstatSymbol, model.Citation);
            Same("SOL_SOCKET", OsAbi.SolSocket(os), $"{Table} SolSocket", model.SocketOption.Level, model.Citation);
            Same("SO_TYPE", OsAbi.SoType(os), $"{Table} SoType", model.SocketOption.Type, model.Citation);
            Same("SOCK_STREAM", OsAbi.SockStream(os), $"{Table} SockStream", model.SocketTypes.Stream, model.Citation);
            Same("RLIMIT_NOFILE", OsAbi.RlimitNofile(os), $"{Table} RlimitNofile", model.RlimitNofile, model.Citation);
            Same("AF_INET6", OsAbi.AfInet6(os), $"{Table} AfInet6", model.AfInet6, model.Citation);
            Same("POLLRDHUP", OsAbi.PollRdHup(os), $"{Table} PollRdHup", model.PollRdHup, model.Citation);
            Same("ENOENT", errnos.Enoent, $"{Table} Errnos", model.Errnos.Enoent, model.Citation);
            Same("EINTR", errnos.Eintr, $"{Table} Errnos", model.Errnos.Eintr, model.Citation);
            Same("EBADF", errnos.Ebadf, $"{Table} Errnos", model.Errnos.Ebadf, model.Citation);
            Same("EINVAL", errnos.Einval, $"{Table} Errnos", model.Errnos.Einval, model.Citation);
            Same("ENOTCONN", errnos.Enotconn, $"{Table} Errnos", model.Errnos.Enotconn, model.Citation);
            Same("EBADFD", errnos.Ebadfd, $"{Table} Errnos", model.Errnos.Ebadfd, model.Citation);
            Same("ETIME", errnos.Etime, $"{Table} Errnos", model.Errnos.Etime, model.Citation);
        });
    }

    [TestCaseSource(nameof(KqueueProfiles))]
    public void TheKqueueTableAgreesWithTheModel(string name)
    {
        var model = KqueueAbi.All.Single(k => k.Name == name);
        var backend = KqueueProfile.All.SingleOrDefault(p => p.Name == model.Name);
        Assert.That(backend, Is.Not.Null, $"the backend has no table for {model.Name}");
        const string Table = "src/IoMux/Backends/Kqueue/KqueueProfile.cs";
        Assert.Multiple(() =>
        {
            Same("EVFILT_READ", backend!.Read, Table, model.Read, model.Citation);
            Same("EVFILT_WRITE", backend.Write, Table, model.Write, model.Citation);
            Same("EVFILT_EXCEPT", backend.Except, Table, model.Except, model.Citation);
            Same("NOTE_OOB", backend.ExceptFlags, Table, model.NoteOob, model.Citation);
            Same("EVFILT_USER", backend.User, Table, model.User, model.Citation);
            Same("EVFILT_SYSCOUNT", backend.FilterCount, Table, model.SysCount, model.Citation);
            Same("filters numbered upwards", backend.PositiveFilters, Table, model.PositiveFilters, model.Citation);
            Same("an existing knote cannot be updated without EV_CLEAR", backend.ReAddNeedsFreshKnote, Table, model.CannotModifyWithoutClear, model.Citation);
            Same("close(2) leaves the knotes", backend.CloseKeepsKnotes, Table, model.CloseKeepsKnotes, model.Citation);
        });
    }

    [Test]
    public void TheKeventFlagsAgreeWithTheModel()
    {
        const string Table = "src/IoMux/Backends/Kqueue/KEvent.cs Kq";
        const string Model = "tests/IoMux.Models/ModelAbi.cs KqueueAbi";
        Assert.Multiple(() =>
        {
            Same("EV_ADD", Kq.EV_ADD, Table, KqueueAbi.EV_ADD, Model);
            Same("EV_DELETE", Kq.EV_DELETE, Table, KqueueAbi.EV_DELETE, Model);
            Same("EV_ENABLE", Kq.EV_ENABLE, Table, KqueueAbi.EV_ENABLE, Model);
            Same("EV_DISABLE", Kq.EV_DISABLE, Table, KqueueAbi.EV_DISABLE, Model);
            Same("EV_ONESHOT", Kq.EV_ONESHOT, Table, KqueueAbi.EV_ONESHOT, Model);
            Same("EV_CLEAR", Kq.EV_CLEAR, Table, KqueueAbi.EV_CLEAR, Model);
            Same("EV_RECEIPT", Kq.EV_RECEIPT, Table, KqueueAbi.EV_RECEIPT, Model);
            Same("EV_DISPATCH", Kq.EV_DISPATCH, Table, KqueueAbi.EV_DISPATCH, Model);
            Same("EV_ERROR", Kq.EV_ERROR, Table, KqueueAbi.EV_ERROR, Model);
            Same("EV_EOF", Kq.EV_EOF, Table, KqueueAbi.EV_EOF, Model);
            Same("NOTE_TRIGGER", Kq.NOTE_TRIGGER, Table, KqueueAbi.NOTE_TRIGGER, Model);
        });
    }

    [TestCase("illumos")]
    [TestCase("Solaris")]
    public void TheEventPortTableAgreesWithTheModel(string name)
    {
        var backend = name == "illumos" ? PortPollBits.Illumos : PortPollBits.Solaris;
        var model = name == "illumos" ? TargetAbi.Illumos : TargetAbi.Solaris;
        const string Table = "src/IoMux/Backends/EventPorts/IEventPortSystem.cs";
        const string Model = "tests/IoMux.Models/ModelAbi.cs PortAbi";
        Assert.Multiple(() =>
        {
            Same("POLLIN", backend.In, Table, PortAbi.PollIn, Model);
            Same("POLLPRI", backend.Pri, Table, PortAbi.PollPri, Model);
            Same("POLLOUT", backend.Out, Table, PortAbi.PollOut, Model);
            Same("POLLERR", backend.Err, Table, PortAbi.PollErr, Model);
            Same("POLLHUP", backend.Hup, Table, PortAbi.PollHup, Model);
            Same("POLLNVAL", backend.Nval, Table, PortAbi.PollNval, Model);
            Same("POLLRDHUP", backend.RdHup, Table, (int)model.PollRdHup, model.Citation);
            Same("PORT_SOURCE_USER", PortSource.User, Table, PortAbi.SourceUser, Model);
            Same("PORT_SOURCE_FD", PortSource.Fd, Table, PortAbi.SourceFd, Model);
        });
    }

    [Test(Description = "A difference is reported with both sources: the check is not vacuous.")]
    public void ADifferenceNamesBothSources()
    {
        var wrong = TargetAbi.Illumos with { FionRead = 0x667F };
        var failure = Assert.Throws<MultipleAssertException>(() => Compare(wrong))!;
        Assert.That(failure.Message, Does.Contain("FIONREAD").And.Contain("OsAbi.cs").And.Contain(wrong.Citation));
    }
}
