// The organization page (#/organization): invitations to you (accept or
// decline: how you join another organization), and for admins of the
// selected organization, its members and inviting people by email.
import { get, post, del } from '../api.js';
import { session, currentOrg, loadSession, selectOrg } from '../session.js';
import { h, clear, field, toast, ago, badge, table, pageHeader, showError, clearErrors, confirmDialog } from '../ui.js';

const enc = encodeURIComponent;

export async function render(main, ctx) {
  const { signal } = ctx;
  const org = currentOrg();
  const admin = org?.role === 'admin';
  const mine = h('section', { 'aria-labelledby': 'inv-mine' }, h('h2', { id: 'inv-mine' }, 'Invitations to you'));
  const members = h('section', { 'aria-labelledby': 'org-members' }, h('h2', { id: 'org-members' }, org ? `Members of ${org.name}` : 'Members'));
  const invites = h('section', { 'aria-labelledby': 'org-invites' }, h('h2', { id: 'org-invites' }, 'Invite people'));
  main.append(pageHeader('Organization'), mine, members, admin ? invites : null);

  async function drawMine() {
    const { invitations = [] } = await get('/users/me/invitations', { signal });
    const pending = invitations.filter((i) => i.status === 'pending');
    clear(mine).append(h('h2', { id: 'inv-mine' }, 'Invitations to you'), table([
      { label: 'Organization', cell: (i) => i.orgName || i.orgId },
      { label: 'Role', cell: (i) => i.role },
      { label: 'Expires', cell: (i) => ago(i.expiresAt) },
      { label: 'Answer', cell: (i) => h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'primary', onClick: () => answer(i, 'accept') }, `Accept ${i.orgName || ''}`.trim()),
        h('button', { type: 'button', onClick: () => answer(i, 'decline') }, 'Decline')) },
    ], pending, { empty: 'No pending invitations.' }));
  }

  async function answer(invitation, verb) {
    try {
      await post(`/invitations/${enc(invitation.id)}/${verb}`, {});
      if (verb === 'accept') {
        await loadSession();
        selectOrg(invitation.orgId);
        toast(`You joined ${invitation.orgName || invitation.orgId}; it is now selected.`, 'ok');
        ctx.navigate('/organization', { replace: true });
        return;
      }
      toast('Invitation declined.', 'ok');
      await drawMine();
    } catch (e) {
      toast(e.message, 'error');
    }
  }

  async function drawMembers() {
    if (!org) { clear(members); return; }
    const { members: list = [] } = await get(`/orgs/${enc(org.id)}/members`, { signal });
    clear(members).append(h('h2', { id: 'org-members' }, `Members of ${org.name}`), table([
      { label: 'Name', cell: (m) => m.userId === session.user?.id ? `${m.name} (you)` : m.name },
      { label: 'Email', cell: (m) => m.email },
      { label: 'Role', cell: (m) => m.role },
      { label: 'Joined', cell: (m) => ago(m.joinedAt) },
    ], list));
  }

  async function drawInvites() {
    if (!admin) return;
    const form = h('form', { class: 'card', novalidate: true },
      field({ name: 'email', label: 'Email to invite', type: 'email', required: true, attrs: { autocomplete: 'off' } }),
      field({ name: 'role', label: 'Role', type: 'select', value: 'member', options: [['member', 'Member'], ['admin', 'Admin']] }),
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Send invitation')));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      clearErrors(form);
      const email = form.elements.email.value.trim();
      if (!email) { showError(form, new Error('email is required')); return; }
      try {
        await post(`/orgs/${enc(org.id)}/invitations`, { email, role: form.elements.role.value });
        form.reset();
        toast(`Invited ${email}: they accept on this page after signing in.`, 'ok');
        await drawInvites();
      } catch (err) {
        showError(form, err);
      }
    });
    const { invitations = [] } = await get(`/orgs/${enc(org.id)}/invitations`, { signal });
    clear(invites).append(h('h2', { id: 'org-invites' }, 'Invite people'), form, table([
      { label: 'Email', cell: (i) => i.email },
      { label: 'Role', cell: (i) => i.role },
      { label: 'Status', cell: (i) => badge(i.status) },
      { label: 'Sent', cell: (i) => ago(i.createdAt) },
      { label: '', cell: (i) => (i.status === 'pending'
        ? h('button', { type: 'button', class: 'danger', 'aria-label': `Revoke the invitation of ${i.email}`, onClick: async () => {
          if (!(await confirmDialog(`Revoke the invitation of ${i.email}?`, { confirm: 'Revoke', danger: true }))) return;
          try { await del(`/orgs/${enc(org.id)}/invitations/${enc(i.id)}`); await drawInvites(); } catch (err) { toast(err.message, 'error'); }
        } }, 'Revoke')
        : '') },
    ], invitations, { empty: 'No invitations sent yet.', caption: 'Sent invitations' }));
  }

  await Promise.all([drawMine(), drawMembers(), drawInvites()]);
}
